from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl

from piimem.report.claims import ClaimSettings
from piimem.report.select import Identity
from piimem.report.summary import run_context, write_summary
from piimem.report.sweeps import reported, selection
from piimem.report.tables import build_tables

params, inputs = snakemake.params, snakemake.input
claims = ClaimSettings(level=params.level, min_strings=params.claims["min_strings"],
                       max_ppl_increase=params.claims["max_ppl_increase"],
                       chance_margin=params.claims["chance_margin"], min_seeds=params.claims["min_seeds"],
                       max_ppl_ratio=params.claims["max_ppl_ratio"], audit_confidence=params.audit_confidence,
                       finetuning_epoch=params.finetuning_epoch,
                       identity=Identity.of(pl.read_parquet(inputs.runs)))
metrics = pl.read_parquet(inputs.metrics)  # every run; the tables but tuning_sweep show the selected ones
reported_metrics = reported(metrics, selection(metrics), keep_name=True)
comparisons = pl.read_parquet(inputs.comparisons)
written = build_tables(reported_metrics, comparisons, Path(snakemake.output.csv[0]).parent,
                       finetuning_epoch=params.finetuning_epoch, level=params.level, claims_settings=claims,
                       sweep=metrics, select=params.select, scored_tokens=params.scored_tokens)
written += write_summary(reported_metrics, comparisons, Path(snakemake.output.summary).parent, claims,
                         context=run_context(**params.context))
missing = sorted(set(map(str, snakemake.output)) - set(map(str, written)))
if missing:
    raise ValueError(f"tables: no data for {missing}; metrics.parquet lacks the values they are built from")
log.info("tables: %d files", len(written))
