from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.audit.canaries import canary_spans, canary_summary, make_canaries
from piimem.io import write_private_parquet, write_table

audit, pii = snakemake.params.audit, snakemake.params.pii
canaries = make_canaries(audit["canaries"], audit["seed"])
spans = canary_spans(canaries, pii)
write_private_parquet(canaries, snakemake.output.canaries)
write_private_parquet(spans, snakemake.output.spans)
write_table(canary_summary(canaries, spans), snakemake.output.summary)
