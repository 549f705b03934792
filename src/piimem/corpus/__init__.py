"""Corpus stage: fetch or generate an e-mail corpus, parse it into the messages table, split it.

Modules: `download` (CMU Enron tarball), `synthetic` (seeded Enron-like maildir), `maildir`
(maildir tree -> messages + quarantine tables), `splits` (train / test / public assignment).
"""
