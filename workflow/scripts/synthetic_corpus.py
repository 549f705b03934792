from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

from piimem.corpus.synthetic import SyntheticConfig, generate_maildir
from piimem.io import write_private_parquet

cfg = SyntheticConfig.from_config(snakemake.params.synthetic)
truth = generate_maildir(Path(snakemake.output.maildir), cfg)
write_private_parquet(truth, snakemake.output.truth)
log.info("ground truth: %d PII occurrences, %d canary occurrences", truth.height, truth["is_canary"].sum())
