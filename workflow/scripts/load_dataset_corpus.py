from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.corpus.dataset import HfSource, load_corpus
from piimem.corpus.maildir import quarantine_counts
from piimem.io import write_private_parquet, write_table

params = snakemake.params
messages, quarantine = load_corpus(HfSource.from_config(params.hf), dedup=params.dedup)
for reason, n in quarantine_counts(quarantine).items():
    log.info("quarantined: %d x %s", n, reason)
if messages.height == 0:
    raise ValueError(f"corpus.hf: {params.hf['path']!r} gave no record of at least corpus.hf.min_chars "
                     f"({params.hf['min_chars']}) characters in its mapped splits; check corpus.hf.text_field and "
                     f"corpus.hf.splits")
write_private_parquet(messages, snakemake.output.messages)
write_table(quarantine, snakemake.output.quarantine)
