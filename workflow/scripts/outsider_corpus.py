from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.corpus.pretraining import outsider_corpus, pii_of, training_strings, without_strings
from piimem.io import write_private_parquet, write_table

params = snakemake.params
generated, truth = outsider_corpus(params.synthetic, text_headers=params.text_headers,
                                   max_file_bytes=params.max_file_bytes)
originals = generated.filter(pl.col("duplicate_of").is_null())  # a folder copy would only repeat a message
strings = training_strings(pl.read_parquet(snakemake.input.truth), pl.read_parquet(snakemake.input.messages),
                           pl.read_parquet(snakemake.input.splits), params.person_min_words)
kept = without_strings(originals.select("doc_id", "path", "text"), strings)
write_private_parquet(kept.select("doc_id", "text"), snakemake.output.texts)
write_private_parquet(pii_of(truth, kept, params.text_headers), snakemake.output.pii)
counts = {"messages_generated": generated.height, "folder_copies": generated.height - originals.height,
          "training_pii_strings": len(strings), "holding_training_pii": originals.height - kept.height,
          "messages_kept": kept.height, "characters_kept": int(kept["text"].str.len_chars().sum())}
write_table(pl.DataFrame({"statistic": list(counts), "value": list(counts.values())}), snakemake.output.summary)
log.info("outsiders' corpus: %s", counts)
