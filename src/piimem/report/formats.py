"""Writing a table: csv (every column, full precision), markdown, LaTeX and HTML (numbers with their intervals).

A table is a polars frame whose numeric columns may have companions, named after them:
  "<X> CI low", "<X> CI high"               the within-run interval of X
  "<X> seeds CI low", "<X> seeds CI high"   the t interval across seeds
  "<X> k", "<X> n"                          the counts of a rate (k of n)
csv keeps every column; md and tex fold the companions into X's cell: "0.10 [0.00, 0.56]",
"0.10 [0.02, 0.21]; seeds [0.05, 0.15]", and a count column "1 of 661" (header "<X> (k of n)").
Numbers get a fixed number of decimals (3 for AUC and TPR columns, 2 otherwise); a missing value is a dash.
md, tex and html leave out a column that is empty in every row (a paper figure the config's runs have none
of); csv keeps it. html (great-tables, a self-contained page that the Snakemake report shows inline) carries
the table's title and its notes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
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
    return 3 if "AUC" in column or "TPR" in column or column in THREE_DECIMALS or _is_p_value(column) else 2


def _is_p_value(column: str) -> bool:
    return column == "p" or " p (" in column


def _number(value, column: str, infinity: str) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float):
        if math.isinf(value):
            return infinity if value > 0 else "-" + infinity
        if _is_p_value(column) and value < 0.001:
            return f"{value:.1e}"  # a small p-value keeps its order of magnitude, not "0.000"
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
    drop += [c for c in table.columns if c not in drop and table[c].null_count() == table.height]
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


def to_html(table: pl.DataFrame, notes: Sequence[str] = (), title: str = "", table_id: str = "table") -> str:
    """A self-contained HTML page of the table (great-tables: its own CSS, no script), cells as in md, the
    notes below it. `table_id` names the table's element, so the page is the same every time it is written."""
    from great_tables import GT, html

    headers, rows, numeric = display(table, "∞")
    shown = pl.DataFrame([["–" if c is None else c for c in cells] for cells in rows],
                         schema={f"c{i}": pl.Utf8 for i in range(len(headers))}, orient="row")
    gt = GT(shown, id=table_id).cols_label(**{f"c{i}": h for i, h in enumerate(headers)})
    gt = gt.cols_align("right", columns=[f"c{i}" for i, n in enumerate(numeric) if n]).opt_row_striping()
    # A number and its interval stay on one line; a wide table scrolls sideways instead.
    gt = gt.opt_css(f"#{table_id} .gt_row {{ white-space: nowrap; }}")
    if title:  # left: centred over a wide table the title would sit off screen
        gt = gt.tab_header(title=title).opt_align_table_header(align="left")
    for note in notes:
        gt = gt.tab_source_note(html(_escape_html(f"Note: {note}")))
    body = gt.as_raw_html()
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_escape_html(title)}</title>"
            f"</head><body>\n{body}\n</body></html>\n")


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_tables(table: pl.DataFrame | None, stem: str | os.PathLike,
                 drop_constant: Sequence[str] = (), notes: Sequence[str] = (), title: str = "",
                 fold: Callable[[pl.DataFrame], tuple[pl.DataFrame, list[str]]] | None = None) -> list[Path]:
    """Write `table` as stem.csv (all columns, full precision), stem.md, stem.tex and stem.html; return the
    paths.

    Columns named in `drop_constant` are left out of md, tex and html when they hold a single value (the base
    model of a one-model config, say), and so are columns empty in every row; csv keeps them. `notes` go below
    the md, tex and html tables; `title` heads the html page. `fold` turns the table into its shown form and
    the notes that say what it folded (rows that say nothing, columns that repeat others); csv keeps every row
    and column. A None or empty table writes nothing and returns [].
    """
    if table is None or table.height == 0:
        return []
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + suffix) for suffix in (".csv", ".md", ".tex", ".html")]
    table.write_csv(paths[0])
    folded, fold_notes = fold(table) if fold else (table, [])
    shown, notes = _visible(folded, drop_constant), [*notes, *fold_notes]
    paths[1].write_text(to_markdown(shown, notes), encoding="utf-8")
    paths[2].write_text(to_latex(shown, notes), encoding="utf-8")
    paths[3].write_text(to_html(shown, notes, title, table_id=stem.name), encoding="utf-8")
    return paths
