"""Paper figures from the tidy metrics table, the comparison table and the per-run MIA score files.

Every figure is drawn by a `draw_*` function, which returns a `matplotlib.figure.Figure` (never pyplot: no
display, no global state) or None when its data is absent, and written by the matching `plot_*` function as
stem.png (150 dpi) and stem.pdf, which returns the two paths ([] when there is nothing to draw). Files carry
no timestamps or software versions, so rebuilding from the same data gives the same bytes.

What every figure shares:
- One study per panel set. The runs fall into studies (`studies`): the RMFT study (each base model and
  tuning method run with several defenses: none, dedup, rmft, scrub, dp and their variants, coloured by
  defense) and the fine-tuning-methods study (the undefended runs of several tuning methods, coloured by
  method); a run of neither kind (one run alone) forms a study of its own. A figure draws each study that has
  its data as a block of panels under the study's title, with the block's legend; no panel mixes studies.
- One colour per defense and per tuning method in every figure (`PALETTE`); a variant (rmft_p0.5,
  lora_lr0.002) takes a shade of its base's colour. The undefended run and full fine-tuning share the
  baseline's colour: in the default they are the same run, the baseline of both studies.
- Every value with its interval: one seed, the interval of the metrics row (exact binomial for rates,
  bootstrap for AUCs and perplexity, t over canaries); several seeds, mean ± one standard deviation over
  seeds. Few points per line: error bars, offset per line so that they do not hide each other; many: bands.
- A panel of extraction rates whose baseline extracted fewer than `claims.min_strings` distinct strings is
  greyed and says so ("too few strings: k of |O|"): such a panel cannot decide anything.
- Reference lines where they apply: AUC chance 0.5 with the band 0.5 ± `claims.chance_margin`; the base
  model's perplexity (drawn where it lies near the panel's data; otherwise the panel says where it is).
- Grids of at most three panels per row; notes inside the figure (saved with a tight bounding box).

`build_figures(metrics, comparisons, folder, ...)` draws every figure that has data under the stems of
`FIGURE_STEMS`.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from piimem.defense import DEFENSES
from piimem.metric_names import (
    ALL,
    AUDIT,
    BASE,
    BLIND,
    CANARY,
    HEADLINE_ATTACK,
    LOSS_AUC,
    MIA_AUC,
    PII_INFERENCE_ACC,
    PII_INFERENCE_CANDIDATES,
    PII_INFERENCE_EXPOSURE,
    PPL,
    PPL_BASE,
    SER,
    TARGETED_ACCURACY,
    TER,
    VAL_PPL,
    VAL_PPL_BASE,
    per,
)
from piimem.metrics import pareto_front, roc_auc, roc_curve
from piimem.mia import attack_label
from piimem.report.comparisons import DIFFERENCE, DROP, GAIN, quantity_of
from piimem.report.select import (
    BASELINE,
    PAPER_ENTITY_TYPE,
    TUNING_ORDER,
    at_checkpoint,
    attack_rank,
    bucket_rank,
    defense_rank,
    extraction_entity_types,
    original_view,
    paper_scope,
    prompt_set_rank,
    ser_equals_ter,
    tuning_rank,
)
from piimem.runs import parse_variant
from piimem.schema import default

DPI = 150
STYLE = {"style": "whitegrid", "context": "paper"}
PANEL_SIZE = (4.0, 3.2)  # inches per panel
MAX_COLUMNS = 3  # panels per row: a grid, never a strip
# Every figure by file stem, with the report's group it stands in (its caption: workflow/report/<stem>.rst).
FIGURE_GROUPS = {
    "metrics_by_checkpoint": "Extraction and utility",
    "maxter": "Extraction and utility",
    "mia_auc_by_epoch": "Membership inference",
    "roc_curves": "Membership inference",
    "loss_distributions": "Membership inference",
    "extraction_by_repetition": "Extraction and utility",
    "canary_exposure": "Extraction and utility",
    "targeted_attacks": "Extraction and utility",
    "privacy_utility_ter": "Privacy and utility",
    "privacy_utility_auc": "Privacy and utility",
    "auc_by_val_ppl": "Privacy and utility",
    "audit": "Privacy audit",
}
FIGURE_STEMS = tuple(FIGURE_GROUPS)

# The one palette: a colour per defense kind and per tuning method (piimem.defense.DEFENSES, TUNING_ORDER),
# from the Okabe-Ito and Tableau colour-blind-safe sets. `none` and `full` share the baseline's near-black:
# the undefended full fine-tuning run is the baseline of the RMFT study and the full fine-tuning of the
# methods study, one run in two studies.
PALETTE = {
    "none": "#222222",
    "dedup": "#E69F00",
    "rmft": "#0072B2",
    "scrub": "#D55E00",
    "dp": "#CC79A7",
    "full": "#222222",
    "head": "#009E73",
    "lora": "#8C564B",
    "prefix": "#56B4E9",
    "prompt": "#9467BD",
    "ptuning": "#BCBD22",
}
# Names outside the palette (a defense or method added later), in sorted order.
EXTRA_COLORS = ("#17BECF", "#FF9896", "#98DF8A", "#C5B0D5", "#C49C94", "#F7B6D2", "#DBDB8D", "#9EDAE5")
REFERENCE_COLOR = "grey"  # reference lines: chance, the base model
GREY_FACE = "#e4e4e4"  # the background of a panel that cannot decide anything
TOO_FEW = "too few strings: {k} of {n}"  # the label of such a panel
MAX_ERROR_BAR_POINTS = 8  # up to this many x values per line: error bars; more: bands
DODGE = 0.07  # error bars of neighbouring lines, this share of the x spacing apart

MIN_STRINGS = default("claims.min_strings")
CHANCE_MARGIN = default("claims.chance_margin")
SCOPE_LABELS = {PAPER_ENTITY_TYPE: "e-mail addresses", ALL: "all PII types"}


# ------------------------------------------------------------------------------------------
# Colours


def base_name(name: str, hue: str) -> str:
    """The defense kind (hue "defense") or tuning method (hue "tuning") a run's name belongs to:
    rmft_p0.5 -> rmft, lora_mlp_lr0.002 -> lora."""
    return parse_variant(name, DEFENSES if hue == "defense" else TUNING_ORDER)[0]


def _shade(color: str, step: int) -> tuple[float, float, float]:
    """`color`, mixed with white (odd steps) or black (even steps) the more the larger `step`."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(color))
    if step == 0:
        return tuple(rgb)
    share = min(0.2 * ((step + 1) // 2), 0.6)
    target = np.ones(3) if step % 2 else np.zeros(3)
    return tuple(rgb + share * (target - rgb))


def series_colors(names: Sequence[str], hue: str) -> dict[str, tuple[float, float, float]]:
    """The colour of each series name: its base's palette colour; variants of one base in `names` take
    successive shades of it (the base itself, or the first variant in sorted order, the colour itself)."""
    from matplotlib.colors import to_rgb

    unknown = sorted({base_name(n, hue) for n in names} - set(PALETTE))
    colors, steps = {}, {}
    for name in sorted(names, key=lambda n: (n != base_name(n, hue), n)):
        base = base_name(name, hue)
        color = PALETTE.get(base) or EXTRA_COLORS[unknown.index(base) % len(EXTRA_COLORS)]
        colors[name] = _shade(color, steps.get(base, 0)) if steps.get(base) else to_rgb(color)
        steps[base] = steps.get(base, 0) + 1
    return colors


# ------------------------------------------------------------------------------------------
# Studies


@dataclass(frozen=True)
class Study:
    """A set of runs compared with each other: the runs of one base model and tuning method under several
    defenses ("defenses", the RMFT study), the undefended runs of one base model under several tuning methods
    ("methods"), or the runs that are neither ("runs")."""

    kind: str
    base_model: str
    runs: tuple[tuple[str, str], ...]  # (defense, tuning), in display order
    tuning: str | None = None  # the defenses study's tuning method

    @property
    def hue(self) -> str:
        """The run column a series stands for, and its colour is keyed by."""
        return {"defenses": "defense", "methods": "tuning"}.get(self.kind, "defense")

    def series(self, defense: str, tuning: str) -> str:
        """A run's name in this study's legend: its defense, its tuning method, or both."""
        if self.kind == "defenses":
            return defense
        if self.kind == "methods":
            return tuning
        return f"{defense} / {tuning}" if len({t for _, t in self.runs}) > 1 else defense

    def title(self, several_bases: bool = False) -> str:
        if self.kind == "defenses":
            words = "full fine-tuning" if self.tuning == "full" else f"{self.tuning} tuning"
            kinds = {base_name(d, "defense") for d, _ in self.runs}
            title = f"RMFT study: defenses with {words}" if "rmft" in kinds else f"Defenses with {words}"
        elif self.kind == "methods":
            title = "Fine-tuning methods study: undefended runs by method"
        else:
            title = "Runs"
        return f"{self.base_model}, {title[0].lower()}{title[1:]}" if several_bases else title

    def rows(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The rows of `frame` of this study's runs, with their legend name as `series`."""
        names = pl.DataFrame({"defense": [d for d, _ in self.runs], "tuning": [t for _, t in self.runs],
                              "series": [self.series(d, t) for d, t in self.runs]},
                             schema={"defense": pl.Utf8, "tuning": pl.Utf8, "series": pl.Utf8})
        return frame.filter(pl.col("base_model") == self.base_model).join(names, on=["defense", "tuning"])

    @property
    def order(self) -> list[str]:
        """The series in display order."""
        return [self.series(d, t) for d, t in self.runs]

    @property
    def colors(self) -> dict[str, tuple]:
        if self.kind == "runs" and len({t for _, t in self.runs}) > 1:
            # a series "defense / tuning": keyed by the tuning method, or by the defense where one is applied
            by = {self.series(d, t): (d, "defense") if base_name(d, "defense") != BASELINE else (t, "tuning")
                  for d, t in self.runs}
            return {s: series_colors([name], hue)[name] for s, (name, hue) in by.items()}
        return series_colors(self.order, self.hue)


def studies(frame: pl.DataFrame) -> list[Study]:
    """The studies of the runs in `frame` (columns base_model, defense, tuning): per base model, a
    defenses study per tuning method run with more than one defense, the methods study of the undefended
    runs when there are several tuning methods, and one study of the remaining runs. A run can stand in two
    studies (the undefended full fine-tuning run: the RMFT study's baseline and the methods study's full)."""
    if frame.height == 0:
        return []
    runs = frame.select("base_model", "defense", "tuning").unique().rows()
    found: list[Study] = []
    for base in sorted({b for b, _, _ in runs}):
        mine = {(d, t) for b, d, t in runs if b == base}
        placed: set[tuple[str, str]] = set()
        for tuning in sorted({t for _, t in mine}, key=tuning_rank):
            defenses = sorted({d for d, t in mine if t == tuning}, key=defense_rank)
            if len(defenses) > 1:
                found.append(Study("defenses", base, tuple((d, tuning) for d in defenses), tuning))
                placed |= {(d, tuning) for d in defenses}
        undefended = sorted({t for d, t in mine if d == BASELINE}, key=tuning_rank)
        if len(undefended) > 1:
            found.append(Study("methods", base, tuple((BASELINE, t) for t in undefended)))
            placed |= {(BASELINE, t) for t in undefended}
        rest = sorted(mine - placed, key=lambda r: (tuning_rank(r[1]), defense_rank(r[0])))
        if rest:
            found.append(Study("runs", base, tuple(rest)))
    return found


def _several_bases(frame: pl.DataFrame) -> bool:
    return frame["base_model"].n_unique() > 1


# ------------------------------------------------------------------------------------------
# Layout, legends, notes and saving


@contextmanager
def _style():
    import seaborn as sns

    with sns.axes_style(STYLE["style"]), sns.plotting_context(STYLE["context"]):
        yield


@dataclass
class Block:
    """One study's panels: a title and the panels' keys, row by row (at most MAX_COLUMNS a row)."""

    title: str
    rows: list[list]
    study: Study | None = None


def _wrap_rows(panels: Sequence, width: int = MAX_COLUMNS, square: bool = True) -> list[list]:
    """`panels` in rows of `width`; with `square`, three panels take two rows of two (a 2 x 2 grid reads
    better than a strip of three, and leaves a cell for the legend)."""
    panels = list(panels)
    if square and len(panels) == 3 and width == MAX_COLUMNS:
        width = 2
    return [panels[i:i + width] for i in range(0, len(panels), width)]


def _layout(blocks: Sequence[Block], legend_column: bool = False):
    """A Figure with one sub-figure per block, titled, each a grid of the block's rows; the axes of each
    block (keyed by panel) and its unused cells (switched off, for the legend). `legend_column`: one more
    column, so that every block has a cell for its legend."""
    from matplotlib.figure import Figure

    columns = max(len(row) for block in blocks for row in block.rows) + legend_column
    heights = [len(block.rows) for block in blocks]
    fig = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * sum(heights) + 0.3 * len(blocks)),
                 layout="constrained")
    subfigs = fig.subfigures(len(blocks), 1, height_ratios=heights, squeeze=False).ravel()
    placed = []
    for sub, block in zip(subfigs, blocks):
        grid = sub.subplots(len(block.rows), columns, squeeze=False)
        axes = {}
        spare = []
        for r, row in enumerate(block.rows):
            for c in range(columns):
                if c < len(row):
                    axes[row[c]] = grid[r][c]
                else:
                    grid[r][c].set_axis_off()
                    spare.append(grid[r][c])
        sub.suptitle(block.title, fontweight="bold", fontsize="medium")
        placed.append((sub, axes, spare))
    return fig, placed


def _legend(sub, axes: Sequence, spare: Sequence, title: str | None = None) -> None:
    """One legend for a block's panels (the union of their entries, in order): in the block's first unused
    cell, or right of the block."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, _proxy(handle))
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if not entries:
        return
    if spare:
        spare[0].legend(list(entries.values()), list(entries), loc="center left", frameon=False, title=title)
        return
    root = sub.get_figure(root=True)
    if not getattr(root, "_legend_room", False):  # widen once, so that the panels keep their size
        width, height = root.get_size_inches()
        root.set_size_inches(width + 2.0, height)
        root._legend_room = True
    sub.legend(list(entries.values()), list(entries), loc="outside right center", frameon=False, title=title)


def _proxy(handle):
    """A legend handle at full opacity: a greyed panel fades its lines, its legend entry keeps the colour."""
    from matplotlib.container import BarContainer
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if isinstance(handle, Line2D):
        return Line2D([], [], color=handle.get_color(), marker=handle.get_marker(), markersize=handle.get_markersize(),
                      linestyle=handle.get_linestyle(), linewidth=handle.get_linewidth(),
                      markerfacecolor=handle.get_markerfacecolor())
    if isinstance(handle, BarContainer) and len(handle.patches):
        return Patch(facecolor=handle.patches[0].get_facecolor()[:3])
    return handle


def _footnote(fig, lines: Sequence[str]) -> None:
    """Notes under the panels, wrapped to the figure's width; kept whole by the tight bounding box."""
    lines = [line for line in lines if line]
    if not lines:
        return
    width = int(fig.get_size_inches()[0] * 14)
    text = "\n".join(textwrap.fill(line, width) for line in lines)
    fig.text(0.01, 0, text, ha="left", va="top", fontsize="small", color="#333333")


def save(fig, stem: str | os.PathLike) -> list[Path]:
    """Write `fig` as stem.png (DPI) and stem.pdf without timestamps or version strings, cropped to what it
    draws (notes under the panels included); release it. Returns [stem.png, stem.pdf]."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")
    fig.savefig(png, dpi=DPI, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    fig.savefig(pdf, metadata={"CreationDate": None, "Creator": None, "Producer": None}, bbox_inches="tight",
                pad_inches=0.1)
    fig.clear()  # a bare Figure is not held by pyplot; clearing frees its artists at once
    return [png, pdf]


def _saved(fig, stem: str | os.PathLike) -> list[Path]:
    return [] if fig is None else save(fig, stem)


# ------------------------------------------------------------------------------------------
# Drawing helpers


def _values(metrics: pl.DataFrame, names: Sequence[str]) -> pl.DataFrame:
    return metrics.filter(pl.col("metric").is_in(list(names)) & pl.col("value").is_not_null()
                          & pl.col("value").is_not_nan())


def _prompt_sets(frame: pl.DataFrame) -> list[str]:
    return sorted((p for p in frame["prompt_set"].unique().to_list() if p is not None), key=prompt_set_rank)


def _summary(rows: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """Per `by`: value = the mean over seeds; low/high = the row's interval with one seed, mean ± one
    standard deviation over seeds with several; seeds = how many."""
    grouped = rows.group_by(list(by)).agg(
        pl.col("value").mean(), pl.col("value").std().alias("sd"), pl.col("ci_low").first(),
        pl.col("ci_high").first(), pl.col("seed").n_unique().alias("seeds"))
    several = pl.col("seeds") > 1
    return grouped.with_columns(
        low=pl.when(several).then(pl.col("value") - pl.col("sd")).otherwise(pl.col("ci_low")),
        high=pl.when(several).then(pl.col("value") + pl.col("sd")).otherwise(pl.col("ci_high")),
    ).sort(list(by))


def _offsets(xs: Sequence[float], n_series: int, log: bool = False) -> list[float]:
    """Per series, the shift (added; multiplied on a log axis) that sets its error bars apart."""
    values = sorted(set(xs))
    if log:
        return [(1 + DODGE * 1.5) ** (i - (n_series - 1) / 2) for i in range(n_series)]
    step = min((b - a for a, b in zip(values, values[1:])), default=1.0) or 1.0
    return [DODGE * step * (i - (n_series - 1) / 2) for i in range(n_series)]


def _draw_lines(ax, data: pl.DataFrame, order: Sequence[str], colors: Mapping[str, tuple], x: str = "x",
                log_x: bool = False, marker: str = "o", linestyle: str = "-", label_suffix: str = "") -> None:
    """A line per series of `data` (columns series, `x`, value, low, high), in `order`, each with its
    interval: error bars set apart per series when a line has few points, translucent bands otherwise."""
    present = [s for s in order if data.filter(pl.col("series") == s).height]
    if not present:
        return
    bars = data[x].n_unique() <= MAX_ERROR_BAR_POINTS
    shifts = _offsets(data[x].to_list(), len(present), log_x) if bars else [1.0 if log_x else 0.0] * len(present)
    for name, shift in zip(present, shifts):
        part = data.filter(pl.col("series") == name).sort(x)
        xs = part[x].to_numpy().astype(float)
        xs = xs * shift if log_x else xs + shift
        ys = part["value"].to_numpy().astype(float)
        ax.plot(xs, ys, color=colors[name], marker=marker, markersize=4, linewidth=1.4, linestyle=linestyle,
                label=name + label_suffix)
        low = part["low"].fill_null(float("nan")).to_numpy().astype(float)
        high = part["high"].fill_null(float("nan")).to_numpy().astype(float)
        if np.isnan(low).all():
            continue
        if bars:
            ax.errorbar(xs, ys, yerr=[np.nan_to_num(ys - low), np.nan_to_num(high - ys)], fmt="none",
                        ecolor=colors[name], elinewidth=0.9, capsize=2)
        else:
            ax.fill_between(xs, low, high, color=colors[name], alpha=0.15, linewidth=0)


def _chance(ax, margin: float) -> None:
    """AUC's chance level 0.5 (dashed) and the band 0.5 ± margin that counts as "near chance"."""
    ax.axhspan(0.5 - margin, 0.5 + margin, color=REFERENCE_COLOR, alpha=0.15, linewidth=0,
               label=f"chance: 0.5 ± {margin:g}")
    ax.axhline(0.5, color=REFERENCE_COLOR, linestyle="--", linewidth=0.8)


def _reference(ax, value: float | None, label: str, span: tuple[float, float], vertical: bool = False) -> str:
    """A reference value (the base model's) as a dotted line when it lies within the panel's data `span`
    widened by half its width; farther out a line would squeeze the data: then the line for the axis
    label that says where it is ("" when drawn or absent)."""
    if value is None or not math.isfinite(value):
        return ""
    low, high = span
    reach = max(high - low, abs(high) * 0.05, 1e-9) / 2
    if low - reach <= value <= high + reach:
        line = ax.axvline if vertical else ax.axhline
        line(value, color=REFERENCE_COLOR, linestyle=":", linewidth=1.2, label=label)
        return ""
    side = ("right of" if value > high else "left of") if vertical else ("above" if value > high else "below")
    return f"{label}: {value:.3g}, {side} the panel"


def _span(*columns: pl.Series) -> tuple[float, float]:
    values = [v for c in columns for v in c.to_list() if v is not None and math.isfinite(v)]
    return (min(values), max(values)) if values else (0.0, 1.0)


def _grey_out(ax, k: int | None, n: int | None, min_strings: int) -> None:
    """Mark a panel that cannot decide anything: grey background, faded data, and under its title the count
    that says why (a title line, where it hides no data)."""
    ax.set_facecolor(GREY_FACE)
    for artist in [*ax.lines, *ax.collections, *ax.patches]:
        artist.set_alpha(0.45)
    counts = TOO_FEW.format(k="?" if k is None else k, n="?" if n is None else n)
    ax.set_title(f"{ax.get_title()}\n{counts} (cannot decide: < {min_strings})", color="#555555")


def _evidence(metrics: pl.DataFrame, comparisons: pl.DataFrame | None, study: Study, prompt_set: str | None,
              entity_type: str) -> tuple[int | None, int | None]:
    """(distinct strings the study's baseline extracted at any checkpoint, |O|) for one panel of extraction
    rates: the comparison table's `baseline_strings` (the claims' count) where it has the panel; otherwise
    the metrics' most strings any checkpoint of the baseline (methods study: of any run) extracted, a
    lower bound of the distinct ones."""
    if comparisons is not None and study.kind == "defenses" and comparisons.height:
        rows = comparisons.filter(
            pl.col("baseline_strings").is_not_null() & (pl.col("base_model") == study.base_model)
            & (pl.col("tuning") == study.tuning) & pl.col("prompt_set").eq_missing(prompt_set)
            & (pl.col("entity_type") == entity_type))
        if rows.height:
            return int(rows["baseline_strings"].max()), int(rows["n"].max())
    runs = [(d, t) for d, t in study.runs if study.kind != "defenses" or d == BASELINE] or list(study.runs)
    rows = metrics.filter((pl.col("metric") == TER) & (pl.col("base_model") == study.base_model)
                          & pl.col("prompt_set").eq_missing(prompt_set) & (pl.col("entity_type") == entity_type)
                          & _of_runs(runs))
    if rows.height == 0 or rows["k"].is_null().all():
        return None, None
    return int(rows["k"].max()), int(rows["n"].max())


def _of_runs(runs: Sequence[tuple[str, str]]) -> pl.Expr:
    """Rows of any of `runs` ((defense, tuning) pairs)."""
    return pl.any_horizontal([(pl.col("defense") == d) & (pl.col("tuning") == t) for d, t in runs])


def _compares(study: Study, rows: pl.DataFrame) -> bool:
    """Whether `rows` (of one kind of data) compare runs of `study`: two or more of its runs have them (one
    run alone repeats what the study that compares it shows), or the study is the leftover runs'."""
    runs = rows.select("defense", "tuning").unique().height
    return runs > 1 or (study.kind == "runs" and runs == 1)


def _epoch_ticks(ax, xs: Sequence[float]) -> None:
    """Ticks at the checkpoints' epochs when there are few (no 1.5 between epochs 1 and 2)."""
    values = sorted(set(xs))
    if 0 < len(values) <= MAX_ERROR_BAR_POINTS:
        ax.set_xticks(values, [f"{v:g}" for v in values])


def _strings_line(study: Study, k: int | None, n: int | None) -> str:
    """The title line of a panel that can decide: how many distinct strings its evidence rests on."""
    if k is None:
        return ""
    return f"\n{BASELINE if study.kind == 'defenses' else 'most by one run'}: {k} of {n} strings"


def _too_few(k: int | None, min_strings: int) -> bool:
    return k is not None and k < min_strings


def _scope_label(entity_type: str) -> str:
    return SCOPE_LABELS.get(entity_type, entity_type)


def _extraction_scopes(metrics: pl.DataFrame) -> list[str]:
    """The PII scopes the extraction figures show, as the claims and the RMFT table: e-mail addresses (the
    paper's) when measured, all types together when other types were measured too."""
    return extraction_entity_types(metrics) or [ALL]


# ------------------------------------------------------------------------------------------
# Extraction and utility against training


def _ppl_with_intervals(rows: pl.DataFrame, comparisons: pl.DataFrame | None) -> pl.DataFrame:
    """`rows` with each checkpoint's PPL interval, the bootstrap over test messages of the comparison
    table, where the metrics row has none."""
    if comparisons is None or comparisons.height == 0:
        return rows
    ppl = comparisons.filter((pl.col("quantity") == PPL) & pl.col("checkpoint").is_not_null())
    keys = ["base_model", "tuning", "defense", "checkpoint", "metric"]
    ppl = ppl.select("base_model", "tuning", "defense", "checkpoint", pl.lit(PPL).alias("metric"),
                     pl.col("ci_low").alias("ppl_low"), pl.col("ci_high").alias("ppl_high")).unique(keys)
    joined = rows.join(ppl, on=keys, how="left")
    return joined.with_columns(ci_low=pl.coalesce("ci_low", "ppl_low"),
                               ci_high=pl.coalesce("ci_high", "ppl_high")).drop("ppl_low", "ppl_high")


def _ser_repeats_ter(rows: pl.DataFrame) -> bool:
    """Whether a study's SER panels would repeat its TER panels: SER = TER by construction
    (`piimem.report.select.ser_equals_ter`) for every undefended run, as once every checkpoint follows
    the first epoch. A deduplicated run's SER differs only by the PII of the messages it removed (the
    extraction table gives it)."""
    equal = ser_equals_ter(rows)
    keys = rows.filter(pl.col("metric").is_in([TER, SER])).select(
        "base_model", "defense", "tuning", "prompt_set", "entity_type").unique()
    undefended = keys.filter(pl.col("defense") == BASELINE)
    checked = undefended if undefended.height else keys
    return all(tuple(r) in equal for r in checked.rows())


def _ppl_cost_lines(comparisons: pl.DataFrame | None, study: Study) -> list[str]:
    """A defenses study's paired perplexity increase vs none (mean over checkpoints), one line per defense."""
    if comparisons is None or study.kind != "defenses" or comparisons.height == 0:
        return []
    rows = comparisons.filter((pl.col("quantity") == "ppl_increase") & (pl.col("base_model") == study.base_model)
                              & (pl.col("tuning") == study.tuning))
    lines = []
    for defense, _ in study.runs:
        for row in rows.filter(pl.col("defense") == defense).iter_rows(named=True):
            interval = (f" [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}]" if row["ci_low"] is not None else "")
            lines.append(f"{defense} vs {row['versus']}: {row['value']:+.1f} %{interval}")
    return lines


def draw_metrics_by_checkpoint(metrics: pl.DataFrame, comparisons: pl.DataFrame | None = None,
                               min_strings: int = MIN_STRINGS, entity_types: Sequence[str] | None = None):
    """Per study: TER (%) against epoch, a panel per PII scope (rows: e-mail addresses, all types) and
    prompt set (columns), and the test perplexity against epoch; SER panels only where SER is not TER by
    construction. A line per run of the study. TER panels whose baseline extracted fewer than
    `min_strings` distinct strings are greyed; the others say how many it extracted. The perplexity panel
    has the base model's perplexity and, for defenses, their paired increase over none under the panel."""
    rows = _values(metrics, [TER, SER, PPL]).filter(pl.col("entity_type").is_null()
                                                    | pl.col("metric").is_in([TER, SER]))
    if rows.height == 0:
        return None
    rows = _ppl_with_intervals(rows, comparisons)
    base_ppl = _values(metrics, [PPL_BASE])
    blocks = []
    for study in studies(rows):
        mine = study.rows(rows)
        extraction = mine.filter(pl.col("metric").is_in([TER, SER]))
        panels = []
        if _compares(study, extraction):
            scopes = [s for s in (entity_types or _extraction_scopes(extraction))
                      if extraction.filter(pl.col("entity_type") == s).height]
            metric_names = [TER] if _ser_repeats_ter(extraction) else [TER, SER]
            panels = [[(m, s, p) for p in _prompt_sets(extraction.filter(pl.col("entity_type") == s))]
                      for m in metric_names for s in scopes]
        has_ppl = mine.filter(pl.col("metric") == PPL).height > 0
        if has_ppl and panels and len(panels[0]) < MAX_COLUMNS:
            panels[0].append((PPL,))
        elif has_ppl:
            panels.append([(PPL,)])
        panels = [chunk for row in panels if row for chunk in _wrap_rows(row, square=False)]
        if panels:
            blocks.append(Block(study.title(_several_bases(rows)), panels, study))
    if not blocks:
        return None
    with _style():
        fig, placed = _layout(blocks)
        for block, (sub, axes, spare) in zip(blocks, placed):
            study = block.study
            mine = study.rows(rows)
            for key, ax in axes.items():
                if key[0] == PPL:
                    data = _summary(mine.filter(pl.col("metric") == PPL), ["series", "epoch"])
                    _draw_lines(ax, data.rename({"epoch": "x"}), study.order, study.colors)
                    _epoch_ticks(ax, data["epoch"].to_list())
                    base = base_ppl.filter(pl.col("base_model") == study.base_model)["value"].mean()
                    note = _reference(ax, base, "base model", _span(data["low"], data["high"], data["value"]))
                    cost = _ppl_cost_lines(comparisons, study)
                    ax.set(title="test perplexity", ylabel="PPL (mean over test messages)",
                           xlabel="\n".join(["epoch", *([note] if note else []),
                                             *(["vs none, paired, mean over checkpoints:"] + cost if cost else [])]))
                    continue
                metric, scope, prompt_set = key
                part = mine.filter((pl.col("metric") == metric) & (pl.col("entity_type") == scope)
                                   & (pl.col("prompt_set") == prompt_set))
                data = _summary(part, ["series", "epoch"]).rename({"epoch": "x"})
                _draw_lines(ax, data, study.order, study.colors)
                k, n = _evidence(metrics, comparisons, study, prompt_set, scope)
                title = f"{metric.upper()}, {_scope_label(scope)}, prompts: {prompt_set}"
                ax.set(xlabel="epoch", ylabel=f"{metric.upper()} (%)")
                _epoch_ticks(ax, data["x"].to_list())
                ax.set_ylim(bottom=0)
                if _too_few(k, min_strings):
                    ax.set_title(title)
                    _grey_out(ax, k, n, min_strings)
                else:
                    ax.set_title(title + _strings_line(study, k, n))
            _legend(sub, list(axes.values()), spare)
    return fig


def plot_metrics_by_checkpoint(metrics: pl.DataFrame, stem: str | os.PathLike,
                               comparisons: pl.DataFrame | None = None, **options) -> list[Path]:
    """`draw_metrics_by_checkpoint`, saved under `stem`."""
    return _saved(draw_metrics_by_checkpoint(metrics, comparisons, **options), stem)


def _aurc_line(summary: Mapping, key: tuple, defense: str) -> str:
    area = summary.get((*key, defense, "aurc"), {})
    cheapest = summary.get((*key, defense, "min_ppl_increase"), {})
    if area.get("value") is None:
        if cheapest.get("value") is not None:
            return f"{defense}: AURC undefined (cheapest checkpoint +{cheapest['value']:.1f} % PPL)"
        return f"{defense}: AURC undefined"
    interval = f" [{area['ci_low']:.0f}, {area['ci_high']:.0f}]" if area.get("ci_low") is not None else ""
    return f"{defense}: AURC {area['value']:.0f} %{interval} on {area['coverage']:.0f} % of τ"


def draw_maxter(comparisons: pl.DataFrame | None, min_strings: int = MIN_STRINGS,
                entity_types: Sequence[str] | None = None):
    """MaxTER(τ) of each defense against the baseline with its paired bootstrap band (the comparison table's
    `maxter` rows), per defenses study a panel per PII scope (rows) and prompt set (columns); each panel's
    AURC with interval and coverage under it; gaps where no checkpoint qualifies. A panel whose baseline
    extracted fewer than `min_strings` distinct strings is greyed, its band drawn as dotted edges."""
    curves = comparisons.filter(pl.col("quantity") == "maxter") if comparisons is not None else None
    if curves is None or curves.height == 0:
        return None
    scopes = list(entity_types or [s for s in (PAPER_ENTITY_TYPE, ALL) if s in set(curves["entity_type"])]
                  or sorted(set(curves["entity_type"])))
    curves = curves.filter(pl.col("entity_type").is_in(scopes)).sort("tau")
    summaries = comparisons.filter(pl.col("quantity").is_in(["aurc", "min_ppl_increase"]))
    summary = {(r["base_model"], r["tuning"], r["prompt_set"], r["entity_type"], r["defense"], r["quantity"]): r
               for r in summaries.iter_rows(named=True)}
    blocks = _maxter_blocks(curves, scopes)
    taus = curves["tau"].unique().sort().to_list()
    with _style():
        fig, placed = _layout(blocks)
        for block, (sub, axes, spare) in zip(blocks, placed):
            study = block.study
            for (scope, prompt_set), ax in axes.items():
                panel = curves.filter((pl.col("base_model") == study.base_model) & (pl.col("tuning") == study.tuning)
                                      & (pl.col("prompt_set") == prompt_set) & (pl.col("entity_type") == scope))
                _draw_maxter_panel(ax, panel, study, (scope, prompt_set), summary, taus, min_strings)
            _legend(sub, list(axes.values()), spare)
    _footnote(fig, ["Gaps: no checkpoint within τ (MaxTER undefined there)."]
              if curves["value"].is_null().any() else [])
    return fig


def _maxter_blocks(curves: pl.DataFrame, scopes: Sequence[str]) -> list[Block]:
    """A block per defenses study (base model and tuning) of the MaxTER curves: a row of panels per PII scope,
    a panel per prompt set."""
    blocks = []
    for base_model, tuning in sorted(curves.select("base_model", "tuning").unique().rows(),
                                     key=lambda r: (r[0], tuning_rank(r[1]))):
        part = curves.filter((pl.col("base_model") == base_model) & (pl.col("tuning") == tuning))
        runs = tuple((d, tuning) for d in sorted({BASELINE, *part["defense"].to_list()}, key=defense_rank))
        study = Study("defenses", base_model, runs, tuning)
        rows = [[(s, p) for p in _prompt_sets(part.filter(pl.col("entity_type") == s))] for s in scopes]
        rows = [chunk for row in rows if row for chunk in _wrap_rows(row, square=False)]
        blocks.append(Block(study.title(curves["base_model"].n_unique() > 1), rows, study))
    return blocks


def _draw_maxter_panel(ax, panel: pl.DataFrame, study: Study, where: tuple[str, str], summary: Mapping,
                       taus: Sequence[float], min_strings: int) -> None:
    """One MaxTER panel (a PII scope and prompt set of a study): a curve per defense with its band, its AURC
    line under the axis, greyed with too few strings."""
    scope, prompt_set = where
    evidence = panel["baseline_strings"].drop_nulls()
    k = int(evidence[0]) if evidence.len() else None
    n = int(panel["n"].drop_nulls()[0]) if panel["n"].drop_nulls().len() else None
    greyed = _too_few(k, min_strings)
    lines = []
    for defense in [d for d, _ in study.runs if d != BASELINE]:
        line = panel.filter(pl.col("defense") == defense)
        if line.height:
            _maxter_curve(ax, line, study.colors[defense], defense, greyed)
            lines.append(_aurc_line(summary, (study.base_model, study.tuning, prompt_set, scope), defense))
    ax.axhline(0, color=REFERENCE_COLOR, linewidth=0.8)
    ax.set_xlim(min(taus), max(taus))
    floor = min([0.0, *panel["value"].drop_nulls().to_list(), *panel["ci_low"].drop_nulls().to_list()])
    ax.set_ylim(floor - 5, 112 if greyed else 105)
    if panel["value"].drop_nulls().is_empty():
        ax.text(0.5, 0.5, "no checkpoint of any defense\nwithin the τ grid", transform=ax.transAxes,
                ha="center", va="center", color="#555555")
    title = f"{_scope_label(scope)}, prompts: {prompt_set}"
    ax.set(ylabel=f"MaxTER: TER cut vs {BASELINE} (%)",
           xlabel="\n".join(["perplexity budget τ (% PPL increase)", *lines]))
    if greyed:
        ax.set_title(title)
        _grey_out(ax, k, n, min_strings)
    else:
        ax.set_title(title + _strings_line(study, k, n))


def _maxter_curve(ax, line: pl.DataFrame, color, defense: str, greyed: bool) -> None:
    """A defense's MaxTER curve over τ with its band (dotted edges on a greyed panel)."""
    tau = line["tau"].to_numpy()
    values, low, high = (line[c].fill_null(float("nan")).to_numpy() for c in ("value", "ci_low", "ci_high"))
    ax.plot(tau, values, color=color, marker=".", markersize=3, label=defense)
    if greyed:  # a band spanning the axis would read as a highlighted region
        for edge in (low, high):
            ax.plot(tau, edge, color=color, linestyle=":", linewidth=0.8)
    else:
        ax.fill_between(tau, low, high, color=color, alpha=0.15, linewidth=0)


def plot_maxter(comparisons: pl.DataFrame | None, stem: str | os.PathLike, **options) -> list[Path]:
    """`draw_maxter`, saved under `stem`."""
    return _saved(draw_maxter(comparisons, **options), stem)


# ------------------------------------------------------------------------------------------
# Membership inference


def _attack_rows(metrics: pl.DataFrame, attacks: Sequence[str] | None = None) -> pl.DataFrame:
    rows = _values(metrics, [m for m in metrics["metric"].unique().to_list() if m.startswith(per(MIA_AUC, ""))])
    if attacks is not None:
        rows = rows.filter(pl.col("metric").is_in([per(MIA_AUC, a) for a in attacks]))
    return rows.with_columns(attack=pl.col("metric").str.split("/").list.get(1))


def _blind(metrics: pl.DataFrame, base_model: str) -> float | None:
    """The blind baseline's AUC (a classifier that never sees the model) on the base model's MIA sample."""
    rows = _values(metrics, [per(MIA_AUC, BLIND)]).filter(pl.col("base_model") == base_model)
    return rows["value"].mean() if rows.height else None


def draw_mia_auc(metrics: pl.DataFrame, attacks: Sequence[str] | None = None,
                 chance_margin: float = CHANCE_MARGIN):
    """ROC AUC of each membership-inference attack against epoch: per study a panel per attack, a line per
    run with its interval; chance (0.5) dashed within the band 0.5 ± `chance_margin`; the blind baseline
    (no model) dotted, not a panel of its own."""
    rows = _attack_rows(metrics, attacks)
    blind = rows.filter(pl.col("attack") == BLIND)
    rows = rows.filter(pl.col("attack") != BLIND)
    if rows.height == 0:
        return None
    blocks = []
    for study in studies(rows):
        present = sorted(study.rows(rows)["attack"].unique().to_list(), key=attack_rank)
        blocks.append(Block(study.title(_several_bases(rows)), _wrap_rows(present), study))
    with _style():
        fig, placed = _layout(blocks)
        for block, (sub, axes, spare) in zip(blocks, placed):
            study = block.study
            mine = study.rows(rows)
            reference = _blind(blind, study.base_model)
            for attack, ax in axes.items():
                data = _summary(mine.filter(pl.col("attack") == attack), ["series", "epoch"]).rename({"epoch": "x"})
                _draw_lines(ax, data, study.order, study.colors)
                _chance(ax, chance_margin)
                if reference is not None:
                    ax.axhline(reference, color=REFERENCE_COLOR, linestyle=":", linewidth=1.2,
                               label=f"blind baseline (no model): {reference:.2f}")
                ax.set(xlabel="epoch", ylabel="ROC AUC", title=f"{attack_label(attack)} attack")
                _epoch_ticks(ax, data["x"].to_list())
            _legend(sub, list(axes.values()), spare)
    return fig


def plot_mia_auc(metrics: pl.DataFrame, stem: str | os.PathLike, **options) -> list[Path]:
    """`draw_mia_auc`, saved under `stem`."""
    return _saved(draw_mia_auc(metrics, **options), stem)


def _score_table(scores: pl.DataFrame | str | os.PathLike, need: Sequence[str]) -> pl.DataFrame:
    """A MIA score table, its rows of the members' original text only (the headline view; a defended
    run's file also holds the trained-text view)."""
    name = "scores" if isinstance(scores, pl.DataFrame) else str(scores)
    table = scores if isinstance(scores, pl.DataFrame) else pl.read_parquet(scores)
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: MIA score table lacks column(s) {missing}; it has {table.columns}")
    if "member_text" in table.columns:
        table = table.filter(pl.col("member_text") == "original").drop("member_text")
    return table


RunKey = tuple[str, str, str]  # (base_model, defense, tuning)


def _auc_label(metrics: pl.DataFrame | None, run: RunKey, attack: str, computed: float | None) -> str:
    """"AUC 0.83 [0.73, 0.90]": the metrics' value and interval at the run's last checkpoint (first seed),
    else the AUC computed from the scores."""
    if metrics is not None and metrics.height:
        rows = at_checkpoint(_values(metrics, [per(MIA_AUC, attack)]).filter(
            (pl.col("base_model") == run[0]) & (pl.col("defense") == run[1]) & (pl.col("tuning") == run[2])))
        if rows.height:
            row = rows.sort("seed").row(0, named=True)
            interval = f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if row["ci_low"] is not None else ""
            return f"AUC {row['value']:.2f}{interval}"
    return "" if computed is None else f"AUC {computed:.2f}"


def draw_roc_curves(scores: Mapping[RunKey, pl.DataFrame | str | os.PathLike], metrics: pl.DataFrame | None = None,
                    attack: str = HEADLINE_ATTACK):
    """ROC curves of `attack` (default the headline LOSS attack) at the last checkpoint of every run in
    `scores` ({(base model, defense, tuning): MIA score table}), one panel per study, a curve per run with
    its AUC and interval, on log-log axes (from 1/(number of non-members) and 1/(number of members), the
    smallest non-zero rates), the chance diagonal dashed. None: no table with the attack's scores."""
    from matplotlib.ticker import FuncFormatter

    tables = {}
    for run, source in scores.items():
        table = _score_table(source, ["member"])
        if attack in table.columns:
            table = table.filter(pl.col(attack).is_not_null() & pl.col(attack).is_not_nan())
            if table.height:
                tables[run] = table
    if not tables:
        return None
    runs = pl.DataFrame([{"base_model": b, "defense": d, "tuning": t} for b, d, t in tables])
    found = studies(runs)
    blocks = [Block(study.title(runs["base_model"].n_unique() > 1), [[study]], study) for study in found]
    with _style():
        fig, placed = _layout(blocks, legend_column=True)
        for block, (sub, axes, spare) in zip(blocks, placed):
            study, ax = block.study, axes[block.study]
            lowest = 1.0
            colors = study.colors
            for (defense, tuning), name in zip(study.runs, study.order):
                table = tables[(study.base_model, defense, tuning)]
                labels, values = table["member"].to_numpy(), table[attack].to_numpy()
                fpr, tpr, _ = roc_curve(values, labels)
                lowest = min(lowest, 1 / max(int((~labels.astype(bool)).sum()), 1), 1 / max(int(labels.sum()), 1))
                shown = (fpr > 0) & (tpr > 0)  # log axes cannot show a zero rate
                auc = _auc_label(metrics, (study.base_model, defense, tuning), attack, roc_auc(values, labels))
                ax.plot(fpr[shown], tpr[shown], color=colors[name], label=f"{name} ({auc})")
            ax.plot([lowest, 1], [lowest, 1], color=REFERENCE_COLOR, linestyle="--", linewidth=0.8, label="chance")
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.01, 0.1, 1; not 10^-2
            ax.set(xlim=(lowest, 1), ylim=(lowest, 1), xlabel="false positive rate", ylabel="true positive rate",
                   title=f"{attack_label(attack)} attack, last checkpoint")
            _legend(sub, [ax], spare)
    return fig


def plot_roc_curves(scores: Mapping[RunKey, pl.DataFrame | str | os.PathLike], stem: str | os.PathLike,
                    metrics: pl.DataFrame | None = None, **options) -> list[Path]:
    """`draw_roc_curves`, saved under `stem`."""
    return _saved(draw_roc_curves(scores, metrics, **options), stem)


MEMBER_STYLE = {"member": {"color": "#333333", "fill": True}, "non-member": {"color": "#999999", "fill": False}}


def draw_loss_distributions(scores: Mapping[RunKey, pl.DataFrame | str | os.PathLike],
                            base_scores: Mapping[str, pl.DataFrame | str | os.PathLike] | None = None,
                            metrics: pl.DataFrame | None = None, bins: int = 30):
    """Member vs non-member distribution of the per-example mean token NLL: per base model a panel of the
    pre-trained model (`base_scores`: its reference statistics with the member labels) and one per run of
    `scores` at its last checkpoint, in study order, each run once (the undefended full fine-tuning run
    stands for both studies), titled with its LOSS AUC and interval. Densities per class, common bins per
    panel; members filled dark, non-members an outline. None: no rows."""
    tables: dict[tuple[str, str], pl.DataFrame] = {}
    titles: dict[tuple[str, str], str] = {}
    for base_model, source in (base_scores or {}).items():
        tables[(base_model, "")] = _score_table(source, ["member", "nll_mean"])
        titles[(base_model, "")] = "pre-trained base model" + (f" ({base_model})" if len(base_scores) > 1 else "")
    runs = pl.DataFrame([{"base_model": b, "defense": d, "tuning": t} for b, d, t in scores]) if scores else None
    for study in studies(runs) if runs is not None else []:
        for (defense, tuning), name in zip(study.runs, study.order):
            key = (study.base_model, f"{defense} / {tuning}")
            if key in tables:
                continue
            tables[key] = _score_table(scores[(study.base_model, defense, tuning)], ["member", "nll_mean"])
            auc = _auc_label(metrics, (study.base_model, defense, tuning), HEADLINE_ATTACK, None)
            titles[key] = f"{defense} / {tuning}" + (f"\nLOSS {auc}" if auc else "")
    tables = {k: t.filter(pl.col("nll_mean").is_not_null() & pl.col("nll_mean").is_not_nan())
              for k, t in tables.items()}
    tables = {k: t for k, t in tables.items() if t.height}
    if not tables:
        return None
    blocks = [Block("Loss of members and non-members, last checkpoint", _wrap_rows(list(tables)), None)]
    with _style():
        fig, placed = _layout(blocks)
        sub, axes, spare = placed[0]
        for key, ax in axes.items():
            table = tables[key]
            values = table["nll_mean"].to_numpy()
            edges = np.histogram_bin_edges(values, bins=bins)
            for label, style in MEMBER_STYLE.items():
                part = table.filter(pl.col("member") == (label == "member"))["nll_mean"].to_numpy()
                if part.size == 0:
                    continue
                if style["fill"]:
                    ax.hist(part, bins=edges, density=True, color=style["color"], alpha=0.35, edgecolor="none",
                            label=label)
                    ax.hist(part, bins=edges, density=True, histtype="step", color=style["color"], linewidth=1)
                else:
                    ax.hist(part, bins=edges, density=True, histtype="step", color=style["color"], linewidth=1.4,
                            linestyle="--", label=label)
            ax.set(xlabel="mean token NLL (nats)", ylabel="density", title=titles[key])
        _legend(sub, list(axes.values()), spare)
    return fig


def plot_loss_distributions(scores: Mapping[RunKey, pl.DataFrame | str | os.PathLike], stem: str | os.PathLike,
                            base_scores: Mapping[str, pl.DataFrame | str | os.PathLike] | None = None,
                            metrics: pl.DataFrame | None = None, **options) -> list[Path]:
    """`draw_loss_distributions`, saved under `stem`."""
    return _saved(draw_loss_distributions(scores, base_scores, metrics, **options), stem)


# ------------------------------------------------------------------------------------------
# Repetition, canaries, targeted attacks


def draw_extraction_by_repetition(metrics: pl.DataFrame, comparisons: pl.DataFrame | None = None,
                                  min_strings: int = MIN_STRINGS, checkpoint: str | None = None,
                                  entity_type: str = ALL):
    """Share of true PII extracted (%) at the last checkpoint by how often it occurs in the training data
    (`piimem.report.tables.extraction_by_repetition`), per defenses study a panel per prompt set: bars per
    defense with their exact interval (several seeds: ± one standard deviation), the number of true PII per
    bucket under each tick. Greyed where the baseline extracted fewer than `min_strings` distinct strings."""
    from piimem.report.tables import extraction_by_repetition

    table = extraction_by_repetition(metrics, checkpoint=checkpoint, entity_type=entity_type)
    value = next((c for c in (table.columns if table is not None else []) if c.startswith("TER (%)")
                  and not c.endswith(("CI low", "CI high"))), None)
    if table is None or value is None or table[value].drop_nulls().len() == 0:
        return None
    low, high = (f"{value} CI low", f"{value} CI high") if f"{value} CI low" in table.columns else (
        f"{value} seeds CI low", f"{value} seeds CI high")
    runs = table.select(pl.col("base model").alias("base_model"), "defense", "tuning").unique()
    blocks = []
    for study in studies(runs):
        mine = table.filter((pl.col("base model") == study.base_model) & _of_runs(study.runs))
        sets = sorted(mine["prompt set"].unique().to_list(), key=prompt_set_rank)
        blocks.append(Block(study.title(_several_bases(runs)) + f", {_scope_label(entity_type)}",
                            _wrap_rows(sets), study))
    with _style():
        fig, placed = _layout(blocks)
        for block, (sub, axes, spare) in zip(blocks, placed):
            study = block.study
            colors = study.colors
            for prompt_set, ax in axes.items():
                data = table.filter((pl.col("base model") == study.base_model) & (pl.col("prompt set") == prompt_set))
                buckets = sorted(data["repetitions"].unique().to_list(), key=bucket_rank)
                present = [(d, t, n) for (d, t), n in zip(study.runs, study.order)
                           if data.filter((pl.col("defense") == d) & (pl.col("tuning") == t)).height]
                width = 0.8 / max(len(present), 1)
                for i, (defense, tuning, name) in enumerate(present):
                    run_rows = data.filter((pl.col("defense") == defense) & (pl.col("tuning") == tuning))
                    rows = {r["repetitions"]: r for r in run_rows.iter_rows(named=True)}
                    x = np.arange(len(buckets)) - 0.4 + width * (i + 0.5)
                    heights = np.array([_or_nan(rows.get(b, {}).get(value)) for b in buckets])
                    lows = np.array([_or_nan(rows.get(b, {}).get(low)) for b in buckets])
                    highs = np.array([_or_nan(rows.get(b, {}).get(high)) for b in buckets])
                    ax.bar(x, np.nan_to_num(heights), width, color=colors[name], label=name)
                    ax.errorbar(x, np.nan_to_num(heights), yerr=[np.nan_to_num(heights - lows),
                                                                 np.nan_to_num(highs - heights)],
                                fmt="none", ecolor="#666666", elinewidth=0.9, capsize=2)
                counts = {b: data.filter(pl.col("repetitions") == b)["TER n"].max() for b in buckets}
                ax.set_xticks(range(len(buckets)), [f"{b}\n(n={counts[b]})" for b in buckets])
                ax.set(xlabel="occurrences in the training data (true strings per bucket)",
                       ylabel="true PII extracted (%)")
                k, n = _evidence(metrics, comparisons, study, prompt_set, entity_type)
                if _too_few(k, min_strings):
                    ax.set_title(f"prompts: {prompt_set}")
                    _grey_out(ax, k, n, min_strings)
                else:
                    ax.set_title(f"prompts: {prompt_set}" + _strings_line(study, k, n))
            _legend(sub, list(axes.values()), spare)
    return fig


def plot_extraction_by_repetition(metrics: pl.DataFrame, stem: str | os.PathLike,
                                  comparisons: pl.DataFrame | None = None, **options) -> list[Path]:
    """`draw_extraction_by_repetition`, saved under `stem`."""
    return _saved(draw_extraction_by_repetition(metrics, comparisons, **options), stem)


def _or_nan(value) -> float:
    return math.nan if value is None else float(value)


def _paired_lines(comparisons: pl.DataFrame | None, quantity: str, study: Study, unit: str,
                  **equal) -> list[str]:
    """"rmft vs none: 3.6 [2.3, 5.0] bits" for each defense of the study with a `quantity` row."""
    if comparisons is None or comparisons.height == 0:
        return []
    rows = comparisons.filter((pl.col("quantity") == quantity) & (pl.col("base_model") == study.base_model)
                              & (pl.col("tuning") == study.tuning))
    for column, value in equal.items():
        rows = rows.filter(pl.col(column).eq_missing(value))
    lines = []
    for defense, _ in study.runs:
        for row in rows.filter(pl.col("defense") == defense).iter_rows(named=True):
            interval = f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if row["ci_low"] is not None else ""
            lines.append(f"{defense} vs {row['versus']}: {row['value']:.2f}{interval} {unit}")
    return lines


def draw_canary_exposure(metrics: pl.DataFrame, comparisons: pl.DataFrame | None = None,
                         checkpoint: str | None = None):
    """Canary exposure (bits) against the number of times the canary was planted, at the last checkpoint
    (or `checkpoint`), per study a panel per PII type, a line per run: the extrapolated exposure with the
    t interval over the cell's canaries (several seeds: ± one standard deviation); the rank exposure
    (capped at log2 |R|, its ceiling dashed) only where no extrapolated exposure was measured. Under each
    panel: the paired drop vs none over that type's canaries. A log exposure axis when values span more
    than a factor of 30."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    families = (CANARY["exposure"], CANARY["exposure_extrapolated"], CANARY["max_exposure"])
    names = [m for m in metrics["metric"].unique().to_list() if m.split("/")[0] in families]
    rows = at_checkpoint(_values(metrics, names), checkpoint=checkpoint)
    rows = rows.with_columns(kind=pl.col("metric").str.split("/").list.get(0),
                             repetitions=pl.col("metric").str.split("/").list.get(1).cast(pl.Int64))
    measured = rows.filter(pl.col("kind") == CANARY["exposure_extrapolated"])
    exposure = measured if measured.height else rows.filter(pl.col("kind") == CANARY["exposure"])
    if exposure.height == 0:
        return None
    rank_only = measured.height == 0
    blocks = []
    for study in studies(exposure):
        types = sorted(study.rows(exposure)["entity_type"].unique().to_list())
        blocks.append(Block(study.title(_several_bases(exposure)), _wrap_rows(types), study))
    with _style():
        fig, placed = _layout(blocks)
        for block, (sub, axes, spare) in zip(blocks, placed):
            study = block.study
            mine = study.rows(exposure)
            for entity_type, ax in axes.items():
                data = _summary(mine.filter(pl.col("entity_type") == entity_type),
                                ["series", "repetitions"]).rename({"repetitions": "x"})
                _draw_lines(ax, data, study.order, study.colors, log_x=True)
                if rank_only:
                    ceiling = rows.filter((pl.col("kind") == CANARY["max_exposure"])
                                          & (pl.col("entity_type") == entity_type))
                    if ceiling.height:
                        ax.axhline(ceiling["value"].max(), color=REFERENCE_COLOR, linestyle="--", linewidth=0.8,
                                   label="rank exposure's maximum (log2 |R|)")
                planted = sorted(data["x"].unique().to_list())
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(FixedLocator(planted))
                ax.xaxis.set_minor_locator(NullLocator())
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                lowest, highest = _span(data["value"])
                if lowest > 0 and highest > 30 * lowest:
                    ax.set_yscale("log")
                drops = _paired_lines(comparisons, "canary_exposure_drop", study, "bits", entity_type=entity_type)
                ax.set(xlabel="\n".join(["times planted in the training data",
                                         *(["exposure drop, paired over canaries:"] + drops if drops else [])]),
                       ylabel=("rank" if rank_only else "extrapolated") + " exposure (bits)",
                       title=f"canaries: {entity_type}")
            _legend(sub, list(axes.values()), spare)
    return fig


def plot_canary_exposure(metrics: pl.DataFrame, stem: str | os.PathLike, comparisons: pl.DataFrame | None = None,
                         **options) -> list[Path]:
    """`draw_canary_exposure`, saved under `stem`."""
    return _saved(draw_canary_exposure(metrics, comparisons, **options), stem)


def _all_zero(rows: pl.DataFrame) -> bool:
    return rows.height > 0 and (rows["value"].fill_null(0) == 0).all()


def draw_targeted_attacks(metrics: pl.DataFrame, comparisons: pl.DataFrame | None = None):
    """The targeted attacks per defenses study at the last scored checkpoint, on the e-mail targets where
    measured (else all types), the defenses side by side:
    - the exposure (bits) of the true string among PII inference's K candidates, the base model's dashed;
      its error bar is the paired interval over the targets of the gain over the base model, so a bar that
      crosses the dashed line is no gain;
    - the paired drop of that exposure vs none (and of rmft vs dedup) with its interval, 0 solid;
    - each attack's accuracy (%, exact interval; several seeds: ± one standard deviation), the base model
      dashed, inference's chance level 100/K dotted. An attack at 0 % for every defense and the base model
      draws no panel: a note under the figure says so."""
    names = [*TARGETED_ACCURACY, *(m + BASE for m in TARGETED_ACCURACY), PII_INFERENCE_EXPOSURE,
             PII_INFERENCE_EXPOSURE + BASE]
    rows = _values(metrics, names)
    if rows.filter(pl.col("metric").is_in(list(TARGETED_ACCURACY))).height == 0:
        return None
    scope = paper_scope(rows["entity_type"])
    rows = at_checkpoint(rows.filter(pl.col("entity_type") == scope))
    notes = []
    blocks = []
    for study in studies(rows):
        mine = study.rows(rows)
        panels = []
        if mine.filter(pl.col("metric") == PII_INFERENCE_EXPOSURE).height:
            panels.append(("exposure",))
            if study.kind == "defenses" and _comparison(comparisons, quantity_of(PII_INFERENCE_EXPOSURE, DROP),
                                                        study).height:
                panels.append(("drop",))
        for metric, label in TARGETED_ACCURACY.items():
            sets = sorted({p for p in mine.filter(pl.col("metric") == metric)["prompt_set"].to_list()},
                          key=lambda p: p or "")
            for prompt_set in sets:
                where = pl.col("prompt_set").eq_missing(prompt_set)
                values = mine.filter((pl.col("metric") == metric) & where)
                base = mine.filter((pl.col("metric") == metric + BASE) & where)
                if _all_zero(values) and (base.height == 0 or _all_zero(base)):
                    notes.append((label, prompt_set, values["n"].max()))
                else:
                    panels.append((metric, prompt_set))
        if panels:
            blocks.append(Block(study.title(_several_bases(rows)) + f"; targets: {_scope_label(scope)}",
                                _wrap_rows(panels), study))
    if not blocks:
        return None
    with _style():
        fig, placed = _layout(blocks)
        for block, (sub, axes, spare) in zip(blocks, placed):
            study = block.study
            mine = study.rows(rows)
            for key, ax in axes.items():
                if key[0] == "exposure":
                    _draw_exposure(ax, mine, comparisons, study)
                elif key[0] == "drop":
                    _draw_exposure_drop(ax, comparisons, study)
                else:
                    _draw_accuracy(ax, mine, metrics, study, scope, *key)
            _legend(sub, list(axes.values()), spare)
    _footnote(fig, [_zero_note(notes)])
    return fig


def _zero_note(notes: Sequence[tuple[str, str | None, int]]) -> str:
    """"Not drawn, 0 % ...: PII reconstruction (0 of 300); association (email-of: 0 of 130, ...)" of the
    (attack, prompt set, targets) whose panels would show nothing but zeros."""
    zero: dict[str, list[str]] = {}
    for label, prompt_set, n in notes:
        zero.setdefault(label, []).append(f"{prompt_set}: 0 of {n}" if prompt_set else f"0 of {n}")
    if not zero:
        return ""
    parts = [f"{label} ({', '.join(counts)})" for label, counts in zero.items()]
    return "Not drawn, 0 % for every run and the base model: " + "; ".join(parts)


def _comparison(comparisons: pl.DataFrame | None, quantity: str, study: Study) -> pl.DataFrame:
    if comparisons is None or comparisons.height == 0:
        return pl.DataFrame()
    return comparisons.filter((pl.col("quantity") == quantity) & (pl.col("base_model") == study.base_model)
                              & (pl.col("tuning") == study.tuning))


def _points(ax, study: Study, values: Mapping[str, tuple[float, float | None, float | None]]) -> list[str]:
    """A point per series of the study at x = its position, with its interval as an error bar."""
    shown = [name for name in study.order if name in values]
    colors = study.colors
    for i, name in enumerate(shown):
        value, low, high = values[name]
        ax.plot([i], [value], marker="o", linestyle="none", color=colors[name], label=name)
        if low is not None and high is not None:
            ax.errorbar([i], [value], yerr=[[value - low], [high - value]], fmt="none", ecolor=colors[name],
                        elinewidth=1.2, capsize=3)
    ax.set_xticks(range(len(shown)), shown)
    ax.set_xlim(-0.6, len(shown) - 0.4)
    return shown


def _draw_exposure(ax, rows: pl.DataFrame, comparisons: pl.DataFrame | None, study: Study) -> None:
    gains = _comparison(comparisons, quantity_of(PII_INFERENCE_EXPOSURE, GAIN), study)
    gains = {r["defense"]: r for r in gains.iter_rows(named=True)}
    values = {}
    for (defense, tuning), name in zip(study.runs, study.order):
        run = rows.filter((pl.col("defense") == defense) & (pl.col("tuning") == tuning)
                          & (pl.col("metric") == PII_INFERENCE_EXPOSURE))
        if run.height == 0:
            continue
        value = run["value"].mean()
        base = rows.filter((pl.col("defense") == defense) & (pl.col("tuning") == tuning)
                           & (pl.col("metric") == PII_INFERENCE_EXPOSURE + BASE))["value"].mean()
        gain = gains.get(defense)
        if gain is not None and gain["ci_low"] is not None and base is not None:
            values[name] = (value, base + gain["ci_low"], base + gain["ci_high"])
        else:
            values[name] = (value, None, None)
    _points(ax, study, values)
    base = rows.filter(pl.col("metric") == PII_INFERENCE_EXPOSURE + BASE)["value"].mean()
    if base is not None:
        ax.axhline(base, color=REFERENCE_COLOR, linestyle="--", linewidth=0.8, label="base model")
    ax.set(title="PII inference: exposure of the true string", ylabel="exposure (bits, mean over targets)",
           xlabel="bars: paired interval of the gain over the base model")


def _draw_exposure_drop(ax, comparisons: pl.DataFrame | None, study: Study) -> None:
    drops = _comparison(comparisons, quantity_of(PII_INFERENCE_EXPOSURE, DROP), study)
    between = _comparison(comparisons, quantity_of(PII_INFERENCE_EXPOSURE, DIFFERENCE), study)
    entries = [(f"{r['defense']}\nvs {r['versus']}", r["defense"], r) for r in drops.iter_rows(named=True)]
    entries.sort(key=lambda e: defense_rank(e[1]))
    entries += [(f"{r['defense']}\nvs {r['versus']}", r["defense"], r) for r in between.iter_rows(named=True)]
    colors = study.colors
    for i, (label, defense, row) in enumerate(entries):
        color = colors.get(defense, REFERENCE_COLOR)
        hollow = row["versus"] != BASELINE
        ax.plot([i], [row["value"]], marker="o", linestyle="none", color=color,
                markerfacecolor="white" if hollow else color)
        if row["ci_low"] is not None:
            ax.errorbar([i], [row["value"]], yerr=[[row["value"] - row["ci_low"]], [row["ci_high"] - row["value"]]],
                        fmt="none", ecolor=color, elinewidth=1.2, capsize=3)
    ax.axhline(0, color=REFERENCE_COLOR, linewidth=0.8)
    ax.set_xticks(range(len(entries)), [e[0] for e in entries])
    ax.set_xlim(-0.6, len(entries) - 0.4)
    ax.set(title="exposure drop (paired over targets)", ylabel="drop (bits; > 0: less exposed)",
           xlabel="bars: paired interval")


def _draw_accuracy(ax, rows: pl.DataFrame, metrics: pl.DataFrame, study: Study, scope: str, metric: str,
                   prompt_set: str | None) -> None:
    where = pl.col("prompt_set").eq_missing(prompt_set)
    values = {}
    for name, part in _summary(rows.filter((pl.col("metric") == metric) & where), ["series"]).group_by("series"):
        row = part.row(0, named=True)
        values[name[0]] = (row["value"], row["low"], row["high"])
    _points(ax, study, values)
    base = rows.filter((pl.col("metric") == metric + BASE) & where)
    if base.height:
        ax.axhline(base["value"].mean(), color=REFERENCE_COLOR, linestyle="--", linewidth=0.8, label="base model")
    candidates = metrics.filter((pl.col("metric") == PII_INFERENCE_CANDIDATES)
                                & (pl.col("entity_type") == scope))["value"].drop_nulls()
    if metric == PII_INFERENCE_ACC and candidates.len():
        ax.axhline(100 / candidates.mean(), color=REFERENCE_COLOR, linestyle=":", linewidth=1.2,
                   label="chance (100/K)")
    n = rows.filter((pl.col("metric") == metric) & where)["n"].max()
    ax.set_ylim(bottom=0)
    ax.set(title=f"{TARGETED_ACCURACY[metric]} accuracy" + (f", prompts: {prompt_set}" if prompt_set else "")
           + f" (n={n})",
           ylabel="accuracy (%)", xlabel="bars: exact interval")


def plot_targeted_attacks(metrics: pl.DataFrame, stem: str | os.PathLike,
                          comparisons: pl.DataFrame | None = None) -> list[Path]:
    """`draw_targeted_attacks`, saved under `stem`."""
    return _saved(draw_targeted_attacks(metrics, comparisons), stem)


# ------------------------------------------------------------------------------------------
# Privacy against utility


def _last_ppl(metrics: pl.DataFrame, comparisons: pl.DataFrame | None, checkpoint: str | None) -> pl.DataFrame:
    """Each run's test PPL at its last checkpoint (or `checkpoint`), with the bootstrap interval over test
    messages where the comparison table has it."""
    ppl = at_checkpoint(_values(metrics, [PPL]), checkpoint=checkpoint)
    ppl = _ppl_with_intervals(ppl, comparisons)
    return ppl.select("base_model", "defense", "tuning", "seed", "checkpoint", x="value", x_low="ci_low",
                      x_high="ci_high")


def _scatter(ax, points: pl.DataFrame, study: Study) -> None:
    """A point per run and seed with both intervals as error bars, in the study's colours; the Pareto front
    (`piimem.metrics.pareto_front`, both lower is better, on the point estimates) as a dotted step line."""
    colors = study.colors
    for name in study.order:
        part = points.filter(pl.col("series") == name)
        if part.height == 0:
            continue
        x, y = part["x"].to_numpy(), part["y"].to_numpy()
        ax.plot(x, y, marker="o", linestyle="none", color=colors[name], label=name, markersize=6)
        yerr = [np.nan_to_num(y - part["y_low"].fill_null(float("nan")).to_numpy()),
                np.nan_to_num(part["y_high"].fill_null(float("nan")).to_numpy() - y)]
        xerr = [np.nan_to_num(x - part["x_low"].fill_null(float("nan")).to_numpy()),
                np.nan_to_num(part["x_high"].fill_null(float("nan")).to_numpy() - x)]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="none", ecolor=colors[name], elinewidth=0.9, capsize=2)
    front = pareto_front(list(zip(points["x"].to_list(), points["y"].to_list())))
    on_front = points[front] if len(front) else points.head(0)
    ax.step(on_front["x"].to_numpy(), on_front["y"].to_numpy(), where="post", color="black", linewidth=1,
            linestyle=":", label="Pareto front")


def draw_privacy_utility(metrics: pl.DataFrame, comparisons: pl.DataFrame | None = None, privacy: str = TER,
                         min_strings: int = MIN_STRINGS, chance_margin: float = CHANCE_MARGIN,
                         checkpoint: str | None = None):
    """Privacy against utility at each run's last checkpoint (or `checkpoint`): x = test PPL with its
    bootstrap interval, y = `privacy` ("ter": per PII scope and prompt set, exact interval, greyed where the
    baseline extracted fewer than `min_strings` distinct strings; "mia_auc/<attack>": the AUC with its
    bootstrap interval, chance 0.5 ± `chance_margin`), a panel (set) per study, a point per run and seed,
    the Pareto front as a step line, the base model's PPL where it lies near the data."""
    rows = _values(metrics, [privacy])
    if rows.height == 0:
        return None
    keys = ["base_model", "defense", "tuning", "seed", "checkpoint"]
    ppl = _last_ppl(metrics, comparisons, checkpoint)
    points = at_checkpoint(rows, checkpoint=checkpoint).select(
        *keys, "prompt_set", "entity_type", y="value", y_low="ci_low", y_high="ci_high").join(ppl, on=keys)
    if points.height == 0:
        return None
    rate = privacy in (TER, SER)
    auc = privacy.startswith(per(MIA_AUC, ""))
    base_ppl = _values(metrics, [PPL_BASE])
    blocks = []
    for study in studies(points):
        mine = study.rows(points)
        if rate:  # a row per PII scope, a column per prompt set
            scopes = [s for s in _extraction_scopes(rows) if mine.filter(pl.col("entity_type") == s).height]
            panels = [[(s, p) for p in _prompt_sets(mine.filter(pl.col("entity_type") == s))] for s in scopes]
            panels = [chunk for row in panels if row for chunk in _wrap_rows(row, square=False)]
        else:
            panels = [[(None, None)]]
        blocks.append(Block(study.title(_several_bases(points)), panels, study))
    ylabel = f"{privacy.upper()} (%)" if rate else (
        f"{attack_label(privacy.split('/', 1)[1])} attack ROC AUC" if auc else privacy)
    with _style():
        fig, placed = _layout(blocks, legend_column=not rate)
        for block, (sub, axes, spare) in zip(blocks, placed):
            study = block.study
            mine = study.rows(points)
            for (scope, prompt_set), ax in axes.items():
                data = mine.filter(pl.col("entity_type").eq_missing(scope)
                                   & pl.col("prompt_set").eq_missing(prompt_set))
                _scatter(ax, data, study)
                if auc:
                    _chance(ax, chance_margin)
                base = base_ppl.filter(pl.col("base_model") == study.base_model)["value"].mean()
                note = _reference(ax, base, "base model", _span(data["x"], data["x_low"], data["x_high"]),
                                  vertical=True)
                ax.set(xlabel="\n".join(["test PPL (lower is better)", *([note] if note else [])]),
                       ylabel=f"{ylabel} (lower is better)")
                title = "at the last checkpoint" if scope is None else f"{_scope_label(scope)}, prompts: {prompt_set}"
                if rate:
                    ax.set_ylim(bottom=0)
                    k, n = _evidence(metrics, comparisons, study, prompt_set, scope)
                    if _too_few(k, min_strings):
                        ax.set_title(title)
                        _grey_out(ax, k, n, min_strings)
                        continue
                    title += _strings_line(study, k, n)
                ax.set_title(title)
            _legend(sub, list(axes.values()), spare)
    return fig


def plot_privacy_utility(metrics: pl.DataFrame, stem: str | os.PathLike, comparisons: pl.DataFrame | None = None,
                         **options) -> list[Path]:
    """`draw_privacy_utility`, saved under `stem`."""
    return _saved(draw_privacy_utility(metrics, comparisons, **options), stem)


def draw_auc_by_val_ppl(metrics: pl.DataFrame, attack: str = HEADLINE_ATTACK, chance_margin: float = CHANCE_MARGIN):
    """Privacy against utility over training, Hou et al.'s view: per study one panel, a line per run through
    its checkpoints in order, x = validation PPL, y = the attack's ROC AUC with its bootstrap interval, the
    last checkpoint ringed; chance 0.5 ± `chance_margin`; the base model's validation PPL dotted where it
    lies near the data. Runs at one x are compared at matched utility."""
    keys = ["base_model", "defense", "tuning", "seed", "checkpoint"]
    auc = _values(metrics, [per(MIA_AUC, attack)]).select(*keys, "epoch", "ci_low", "ci_high", y="value")
    val = _values(metrics, [VAL_PPL]).select(*keys, x="value")
    points = auc.join(val, on=keys, how="inner")
    if points.height == 0:
        return None
    base_ppl = _values(metrics, [VAL_PPL_BASE])
    blocks = [Block(s.title(_several_bases(points)), [[s]], s) for s in studies(points)]
    with _style():
        fig, placed = _layout(blocks, legend_column=True)
        for block, (sub, axes, spare) in zip(blocks, placed):
            study = block.study
            ax = axes[study]
            mine = study.rows(points)
            colors = study.colors
            for name in study.order:
                for _, run in mine.filter(pl.col("series") == name).sort("epoch").group_by("seed", maintain_order=True):
                    x, y = run["x"].to_numpy(), run["y"].to_numpy()
                    ax.plot(x, y, color=colors[name], marker="o", markersize=4, label=name)
                    ax.errorbar(x, y, yerr=[np.nan_to_num(y - run["ci_low"].fill_null(float("nan")).to_numpy()),
                                            np.nan_to_num(run["ci_high"].fill_null(float("nan")).to_numpy() - y)],
                                fmt="none", ecolor=colors[name], elinewidth=0.8, capsize=1.5, alpha=0.7)
                    ax.plot(x[-1:], y[-1:], marker="o", markersize=10, markerfacecolor="none",
                            markeredgecolor="black", linestyle="none")
            _chance(ax, chance_margin)
            base = base_ppl.filter(pl.col("base_model") == study.base_model)["value"].mean()
            note = _reference(ax, base, "base model", _span(mine["x"]), vertical=True)
            ax.set(xlabel="\n".join(["validation PPL (lower is better); ringed: last checkpoint",
                                     *([note] if note else [])]),
                   ylabel=f"{attack_label(attack)} attack ROC AUC", title="AUC against validation PPL")
            _legend(sub, [ax], spare)
    return fig


def plot_auc_by_val_ppl(metrics: pl.DataFrame, stem: str | os.PathLike, **options) -> list[Path]:
    """`draw_auc_by_val_ppl`, saved under `stem`."""
    return _saved(draw_auc_by_val_ppl(metrics, **options), stem)


def draw_audit(metrics: pl.DataFrame):
    """The privacy audit: one panel per study (the defenses of one tuning method, coloured by defense; the
    undefended runs of several methods, coloured by method), a column per run (first seed) with its ε lower
    bound as a point and a short arrow up (the run is at least this leaky); for a DP run the accountant's ε at
    the audit's δ as a bar, which the bound must stay under. None without an audit."""
    from matplotlib.figure import Figure

    keys = ["base_model", "defense", "tuning"]
    bounds = _values(metrics, [AUDIT["epsilon"]])
    if bounds.height == 0:
        return None
    first = bounds.sort("seed").group_by(*keys, maintain_order=True).first()
    accounted = {tuple(r[:3]): r[3] for r in _values(metrics, [AUDIT["accounted"]]).select(*keys, "value").rows()}
    delta = _values(metrics, [AUDIT["delta"]])["value"].max()
    panels = studies(first)
    top = max([*first["value"].to_list(), *accounted.values(), 1.0]) * 1.2
    with _style():
        widths = [len(study.runs) + 1 for study in panels]
        fig = Figure(figsize=(max(PANEL_SIZE[0], 0.75 * sum(widths)), PANEL_SIZE[1]))
        axes = fig.subplots(1, len(panels), squeeze=False, sharey=True, width_ratios=widths)[0]
        for ax, study in zip(axes, panels):
            rows = study.rows(first)
            colors = study.colors
            for x, name in enumerate(study.order):
                row = rows.filter(pl.col("series") == name).row(0, named=True)
                color, value = colors[name], row["value"]
                ax.annotate("", xy=(x, value + 0.1 * top), xytext=(x, value),
                            arrowprops={"arrowstyle": "->", "color": color, "lw": 1.2})
                ax.plot([x], [value], marker="o", markersize=7, color=color, linestyle="none")
                ax.annotate(f"{value:.2g}", (x, value), textcoords="offset points", xytext=(7, -3), fontsize=7)
                bound = accounted.get((row["base_model"], row["defense"], row["tuning"]))
                if bound is not None:
                    ax.plot([x - 0.3, x + 0.3], [bound, bound], color=color, linewidth=2.5,
                            label="accounted ε (audit δ)")
                    ax.annotate(f"accounted {bound:.3g}", (x, bound), textcoords="offset points", xytext=(0, 4),
                                ha="center", fontsize=7)
            ax.set_xticks(range(len(study.order)), study.order)
            ax.set_xlim(-0.6, len(study.order) - 0.4)
            ax.set_ylim(0, top)
            ax.set_title(textwrap.fill(study.title(_several_bases(first)), 40), fontsize=9)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="upper left", fontsize=7, frameon=False)
        axes[0].set_ylabel(f"audited ε, a lower bound (δ = {delta:.0e})")
    return fig


def plot_audit(metrics: pl.DataFrame, stem: str | os.PathLike) -> list[Path]:
    """`draw_audit`, saved under `stem`."""
    return _saved(draw_audit(metrics), stem)


# ------------------------------------------------------------------------------------------
# All figures


def shown_score_files(paths: Sequence[str | os.PathLike], chosen: pl.DataFrame) -> dict[RunKey, Path]:
    """{(base model, defense, tuning as the report names it): score file} of the runs the report shows
    (`chosen`: `piimem.report.sweeps.selection`), the first seed of each, from MIA score files at
    .../{base}/{defense}-{tuning}-s{seed}/mia/{checkpoint}.scores.parquet."""
    from piimem.report.sweeps import reported
    from piimem.runs import RunId

    found = []
    for path in paths:
        run = RunId.parse("/".join(Path(path).parts[-4:-2]))
        found.append({"base_model": run.base, "defense": run.defense, "tuning": run.tuning, "seed": run.seed,
                      "path": str(path)})
    if not found:
        return {}
    named = reported(pl.DataFrame(found), chosen).sort("seed", "path")
    first = named.group_by("base_model", "defense", "tuning", maintain_order=True).first()
    return {(b, d, t): Path(p) for b, d, t, p in first.select("base_model", "defense", "tuning", "path").rows()}


def pretrained_scores(references: Sequence[str | os.PathLike],
                      scores: Mapping[RunKey, pl.DataFrame | str | os.PathLike]) -> dict[str, pl.DataFrame]:
    """{base model: its reference statistics (results/private/mia/{base}/reference.parquet) with the member
    labels}: the statistics carry none, a run's score file of the same base model has them by index."""
    tables = {}
    for path in references:
        base = Path(path).parent.name
        labelled = next((source for (b, _, _), source in scores.items() if b == base), None)
        if labelled is not None:
            labels = _score_table(labelled, ["index", "member"]).select("index", "member").unique("index")
            tables[base] = pl.read_parquet(path).join(labels, on="index")
    return tables



def build_figures(metrics: pl.DataFrame, comparisons: pl.DataFrame | None, folder: str | os.PathLike,
                  scores: Mapping[RunKey, pl.DataFrame | str | os.PathLike] | None = None,
                  base_scores: Mapping[str, pl.DataFrame | str | os.PathLike] | None = None,
                  min_strings: int = MIN_STRINGS, chance_margin: float = CHANCE_MARGIN) -> list[Path]:
    """Every figure that has data, under `folder` with the stems of `FIGURE_STEMS`; the paths written.

    roc_curves and loss_distributions need `scores` ({(base model, defense, tuning): the MIA score table of
    the run's last checkpoint}), loss_distributions also `base_scores` ({base model: its reference
    statistics with the member labels}) for the pre-trained panel. `min_strings` and `chance_margin` are
    the config's `claims` settings: the greyed panels and the chance band.
    """
    folder = Path(folder)
    metrics = original_view(metrics)  # membership inference on the members' original text, the headline
    rates = {"min_strings": min_strings}
    paths = plot_metrics_by_checkpoint(metrics, folder / "metrics_by_checkpoint", comparisons, **rates)
    paths += plot_maxter(comparisons, folder / "maxter", **rates)
    paths += plot_mia_auc(metrics, folder / "mia_auc_by_epoch", chance_margin=chance_margin)
    if scores:
        paths += plot_roc_curves(scores, folder / "roc_curves", metrics)
        paths += plot_loss_distributions(scores, folder / "loss_distributions", base_scores, metrics)
    paths += plot_extraction_by_repetition(metrics, folder / "extraction_by_repetition", comparisons, **rates)
    paths += plot_canary_exposure(metrics, folder / "canary_exposure", comparisons)
    paths += plot_targeted_attacks(metrics, folder / "targeted_attacks", comparisons)
    paths += plot_privacy_utility(metrics, folder / "privacy_utility_ter", comparisons, privacy=TER, **rates)
    paths += plot_privacy_utility(metrics, folder / "privacy_utility_auc", comparisons, privacy=LOSS_AUC,
                                  chance_margin=chance_margin)
    paths += plot_auc_by_val_ppl(metrics, folder / "auc_by_val_ppl", chance_margin=chance_margin)
    paths += plot_audit(metrics, folder / "audit")
    return paths
