"""Writing a table: csv (every column, full precision), markdown and LaTeX (numbers with their intervals).

A table is a polars frame whose numeric columns may have companions, named after them:
  "<X> CI low", "<X> CI high"               the within-run interval of X
  "<X> seeds CI low", "<X> seeds CI high"   the t interval across seeds
  "<X> k", "<X> n"                          the counts of a rate (k of n)
csv keeps every column; md and tex fold the companions into X's cell: "0.10 [0.00, 0.56]",
"0.10 [0.02, 0.21]; seeds [0.05, 0.15]", and a count column "1 of 661" (header "<X> (k of n)").
Numbers get a fixed number of decimals (3 for AUC and TPR columns, 2 otherwise); a missing value is a dash.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

CI = (" CI low", " CI high")
SEEDS_CI = (" seeds CI low", " seeds CI high")
COUNTS = (" k", " n")

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def frame(rows: list[dict], text_columns: Sequence[str] = (), int_columns: Sequence[str] = ()) -> pl.DataFrame:
    """A table of `rows` (dicts in column order; a column missing from a row is null): text columns Utf8,
    counts (`int_columns` and every "<X> k" / "<X> n") Int64, the rest Float64."""
    columns = list(dict.fromkeys(c for r in rows for c in r))
    schema = {c: pl.Utf8 if c in text_columns else pl.Int64 if c in int_columns or c.endswith(COUNTS)
              else pl.Float64 for c in columns}
    return pl.DataFrame([[r.get(c) for c in columns] for r in rows], schema=schema, orient="row")


def latex_escape(text: str) -> str:
    """`text` with LaTeX's special characters escaped, for text mode."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


# Columns of mixed units (the claims table's AUC differences beside percentages) keep three decimals.
THREE_DECIMALS = ("ours", "CI low", "CI high", "p")


def decimals_for(column: str) -> int:
    """Decimals shown for a column in md and tex: 3 for AUC and TPR (values near 0.5 or 0) and the claims'
    numbers, else 2."""
    return 3 if "AUC" in column or "TPR" in column or column in THREE_DECIMALS else 2


def _number(value, column: str, infinity: str) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float):
        if math.isinf(value):
            return infinity if value > 0 else "-" + infinity
        text = f"{value:.{decimals_for(column)}f}"
        return text.lstrip("-") if float(text) == 0 else text  # no "-0.00"
    return str(value)


def display(table: pl.DataFrame, infinity: str = "inf") -> tuple[list[str], list[list[str | None]], list[bool]]:
    """(headers, rows of cell texts (None = missing), numeric?) with the companions folded: intervals into
    their column's cell, a count pair into one column "<X> (k of n)" where "<X> k" stood."""
    present = set(table.columns)
    intervals = {c: [ends for ends in (CI, SEEDS_CI) if c + ends[0] in present and c + ends[1] in present]
                 for c in table.columns}
    hidden = {c + end for c, kinds in intervals.items() for ends in kinds for end in ends}
    counts = {c.removesuffix(COUNTS[0]) for c in table.columns
              if c.endswith(COUNTS[0]) and c.removesuffix(COUNTS[0]) + COUNTS[1] in present}
    hidden |= {x + COUNTS[1] for x in counts}
    columns = [c for c in table.columns if c not in hidden]
    headers = [f"{c.removesuffix(COUNTS[0])} (k of n)" if c.removesuffix(COUNTS[0]) in counts
               and c.endswith(COUNTS[0]) else c for c in columns]
    numeric = [table.schema[c].is_numeric() for c in columns]
    rows = []
    for row in table.iter_rows(named=True):
        cells = []
        for c in columns:
            if c.endswith(COUNTS[0]) and c.removesuffix(COUNTS[0]) in counts:
                x = c.removesuffix(COUNTS[0])
                cells.append(None if row[c] is None else f"{row[c]} of {row[x + COUNTS[1]]}")
                continue
            text = _number(row[c], c, infinity)
            for ends in intervals[c]:
                low, high = (_number(row[c + end], c, infinity) for end in ends)
                if text is not None and low is not None:
                    text += f" [{low}, {high}]" if ends == CI else f"; seeds [{low}, {high}]"
            cells.append(text)
        rows.append(cells)
    return headers, rows, numeric


def _visible(table: pl.DataFrame, drop_constant: Sequence[str]) -> pl.DataFrame:
    drop = [c for c in drop_constant if c in table.columns and table[c].n_unique() <= 1]
    return table.drop(drop) if len(drop) < table.width else table


def to_markdown(table: pl.DataFrame, notes: Sequence[str] = ()) -> str:
    """A GitHub pipe table; numbers right-aligned, a missing value as "–"; each note a line below it."""
    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |"

    headers, rows, numeric = display(table, "inf")
    out = [line(headers), line("---:" if n else "---" for n in numeric)]
    out += [line("–" if c is None else c for c in cells) for cells in rows]
    if notes:
        out += ["", *(f"Note: {note}" for note in notes)]
    return "\n".join(out) + "\n"


def to_latex(table: pl.DataFrame, notes: Sequence[str] = ()) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); text escaped, numbers right-aligned, a missing
    value as "--"; each note a full-width row below the rule."""
    headers, rows, numeric = display(table, r"$\infty$")
    spec = "".join("r" if n else "l" for n in numeric)
    out = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(map(latex_escape, headers)) + r" \\", r"\midrule"]
    for cells in rows:
        # The infinity mark is LaTeX already; everything else is text to escape.
        out.append(" & ".join("--" if c is None else c if r"$\infty$" in c else latex_escape(c)
                              for c in cells) + r" \\")
    out.append(r"\bottomrule")
    out += [rf"\multicolumn{{{len(headers)}}}{{l}}{{\footnotesize Note: {latex_escape(n)}}} \\" for n in notes]
    out.append(r"\end{tabular}")
    return "\n".join(out) + "\n"


def write_tables(table: pl.DataFrame | None, stem: str | os.PathLike,
                 drop_constant: Sequence[str] = (), notes: Sequence[str] = ()) -> list[Path]:
    """Write `table` as stem.csv (all columns, full precision), stem.md and stem.tex; return the paths.

    Columns named in `drop_constant` are left out of md and tex when they hold a single value (the base
    model of a one-model config, say); csv keeps them. `notes` go below the md and tex tables. A None or
    empty table writes nothing and returns [].
    """
    if table is None or table.height == 0:
        return []
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + suffix) for suffix in (".csv", ".md", ".tex")]
    table.write_csv(paths[0])
    shown = _visible(table, drop_constant)
    paths[1].write_text(to_markdown(shown, notes), encoding="utf-8")
    paths[2].write_text(to_latex(shown, notes), encoding="utf-8")
    return paths
