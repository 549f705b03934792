from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

from piimem.corpus.synthetic import SyntheticConfig, generate_maildir
from piimem.io import write_private_parquet

options = dict(snakemake.params.synthetic)
canaries = options.pop("canaries")
cfg = SyntheticConfig(
    **{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()},
    canary_types=tuple(canaries["types"]),
    canary_repetitions=tuple(canaries["repetitions"]),
)
truth = generate_maildir(Path(snakemake.output.maildir), cfg)
write_private_parquet(truth, snakemake.output.truth)
log.info("ground truth: %d PII occurrences, %d canary occurrences", truth.height, truth["is_canary"].sum())
