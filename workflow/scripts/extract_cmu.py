from piimem.logs import log_to_file

log_to_file(snakemake.log[0])

from pathlib import Path

from piimem.corpus.download import extract

maildir = Path(snakemake.output.maildir)
# The tarball holds a top-level maildir/ folder, so it unpacks into the output's parent.
extract(snakemake.input.tarball, maildir.parent)
if not maildir.is_dir():
    raise FileNotFoundError(f"{snakemake.input.tarball}: expected a top-level 'maildir/' folder in the tarball")
