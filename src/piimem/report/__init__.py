"""The report: from metrics.parquet and the runs' per-item records to paper tables, claims and figures.

Its parts, in the order data flows through them (a module imports only those above it):
- `select`: selecting and ranking rows of metrics.parquet (display orders, one checkpoint per run, seed
  means, the members' original text, which runs learnt, where SER is TER by construction).
- `papers`: the two papers' numbers, each with the model and data set it was measured on.
- `formats`: writing a table as csv, markdown and LaTeX, intervals and counts folded into cells.
- `comparisons`: every number that needs resampling, with its paired interval, computed once from the
  per-item records into results/comparisons.parquet.
- `claims`: the registry of the papers' claims and the verdicts their intervals support.
- `tables`: the paper tables, from metrics.parquet and the comparison table.
- `figures`: the paper figures, with their intervals.
"""
