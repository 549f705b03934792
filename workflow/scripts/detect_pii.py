from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.io import write_private_parquet, write_table
from piimem.pii.detect import DETECT_COLUMNS, detect_spans, summarize_spans

pii = snakemake.params.pii
path = snakemake.input.messages
messages = pl.read_parquet(path, columns=[c for c in DETECT_COLUMNS if c in pl.read_parquet_schema(path)])
spans = detect_spans(
    messages,
    entity_types=pii["entity_types"],
    score_threshold=pii["score_threshold"],
    batch_size=pii["batch_size"],
    n_process=min(pii["processes"], snakemake.threads),
    header_pii=pii["header_pii"],
    text_headers=snakemake.params.text_headers,
    spacy_model=pii["spacy_model"],
    ignore=pii["ignore"],
)
write_private_parquet(spans, snakemake.output.spans)
write_table(summarize_spans(spans, messages, pii["entity_types"]), snakemake.output.summary)
