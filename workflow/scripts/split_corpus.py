from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.corpus.dataset import HfSource, assigned_splits
from piimem.corpus.splits import (
    LinkConfig,
    assign_splits,
    corpus_summary,
    cross_split_links,
    link_messages,
    split_audit,
    with_groups,
)
from piimem.io import write_table

messages = pl.read_parquet(snakemake.input.messages)
split = snakemake.params.split
if snakemake.params.hf is not None:
    # A data set's own splits; its records quote no message, and its duplicates of training records were
    # quarantined when it was loaded (piimem.corpus.dataset). Groups: records with the same text.
    log.info("splits: the data set's own (corpus.hf.splits); linking quoted and forwarded mail skipped: not mail")
    splits, counts = assigned_splits(messages, HfSource.from_config(snakemake.params.hf)), {}
else:
    link = LinkConfig.from_config(split["link"], seed=split["seed"])
    groups, counts = link_messages(messages, link)
    splits = with_groups(assign_splits(messages, fractions=split["fractions"], by=split["by"], seed=split["seed"],
                                       groups=groups), groups)
    # What linking changed: the test messages that a split by identical bodies alone would have left holding
    # training text (quotes, forwards), and the same count now (0 by construction). The audit does not trust
    # the linker: test messages with at least `containment` of their word n-grams inside one training message,
    # counting every n-gram (templates' too), and counting only the distinctive ones (what the linker links).
    by_body = assign_splits(messages, fractions=split["fractions"], by=split["by"], seed=split["seed"])
    audit = f"test_with_{round(100 * link.containment)}pct_of_{link.containment_words}grams_in_a_train_message"
    inside = {None: audit, link.max_parts: f"{audit}_distinctive"}
    counts.update(test_with_train_text_if_split_by_body=cross_split_links(groups, by_body),
                  test_with_train_text=cross_split_links(groups, splits),
                  test_messages=splits.filter(pl.col("split") == "test").height,
                  **dict(zip(inside.values(), split_audit(messages, splits, words=link.containment_words,
                                                          level=link.containment, max_bodies=list(inside)))))
write_table(splits, snakemake.output.splits)
write_table(pl.DataFrame({"statistic": list(counts), "value": list(counts.values())}), snakemake.output.links)
summary = corpus_summary(messages, splits, pl.read_csv(snakemake.input.quarantine, separator="\t"))
write_table(summary, snakemake.output.summary)
log.info("splits: %s; linked groups: %s", dict(splits.group_by("split").len().iter_rows()), counts)
