"""Paper figures from the tidy metrics table, the comparison table and the per-checkpoint MIA score files.

Every plot function takes its data and a file stem, writes stem.png (150 dpi) and stem.pdf with `save`,
and returns the two paths; when its data is absent (no extraction in the config, a single defense for
MaxTER, ...) it writes nothing and returns []. Figures are built on `matplotlib.figure.Figure` objects
(never pyplot), so no display and no global figure state is involved, and saved without timestamps or
software versions in their metadata, so rebuilding from the same data gives the same bytes.

One style for all (`STYLE`): seaborn's whitegrid, paper context, a colour-blind palette with a fixed
colour per defense and per tuning method, so the same run has the same colour in every figure.
`build_figures(metrics, comparisons, folder, ...)` draws every figure that has data under the stems of
`FIGURE_STEMS`. Rates are drawn with their intervals: the exact binomial interval of each checkpoint's
TER/SER (one seed), MaxTER with its paired bootstrap band, AUC with its bootstrap band, and each panel of
extraction rates says how many strings the baseline extracted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl

from piimem.defense import DEFENSES
from piimem.metric_names import (
    BASE,
    HEADLINE_ATTACK,
    LABELS,
    LOSS_AUC,
    MIA_AUC,
    PPL,
    SER,
    TER,
    VAL_PPL,
    VAL_PPL_BASE,
    per,
)
from piimem.metrics import pareto_front, roc_curve
from piimem.mia import attack_label
from piimem.report.select import (
    BASELINE,
    PAPER_ENTITY_TYPE,
    RUN_KEYS,
    TUNING_ORDER,
    at_checkpoint,
    attack_rank,
    bucket_rank,
    defense_rank,
    extraction_entity_types,
    original_view,
    prompt_set_rank,
    tuning_rank,
)
from piimem.report.tables import extraction_by_repetition

DPI = 150
STYLE = {"style": "whitegrid", "context": "paper", "palette": "colorblind"}
PANEL_SIZE = (4.0, 3.2)  # inches per panel
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
}
FIGURE_STEMS = tuple(FIGURE_GROUPS)
# Columns of a MIA score file that are not attack scores.
SCORE_FILE_COLUMNS = ("index", "member", "n_tokens", "nll_mean")
MAX_BANDS = 5  # interval bands in one panel; beyond this they hide each other


# ------------------------------------------------------------------------------------------
# Style and saving


@contextmanager
def _style():
    import seaborn as sns

    with sns.axes_style(STYLE["style"]), sns.plotting_context(STYLE["context"]):
        yield


def _figure(n_panels: int, n_rows: int = 1):
    """A bare Figure with a grid of n_panels axes (row-major), created inside the style context."""
    from matplotlib.figure import Figure

    n_cols = math.ceil(n_panels / n_rows)
    fig = Figure(figsize=(PANEL_SIZE[0] * n_cols, PANEL_SIZE[1] * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes[:n_panels])


def save(fig, stem: str | os.PathLike) -> list[Path]:
    """Write `fig` as stem.png (DPI) and stem.pdf without timestamps or version strings; release it.

    Returns [stem.png, stem.pdf]."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")
    fig.savefig(png, dpi=DPI, metadata={"Software": None})
    fig.savefig(pdf, metadata={"CreationDate": None, "Creator": None, "Producer": None})
    fig.clear()  # a bare Figure is not held by pyplot; clearing frees its artists at once
    return [png, pdf]


def _colors(names: Sequence[str], order: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per name: the names of `order` keep their slot, the others follow in sorted order."""
    import seaborn as sns

    palette = sns.color_palette(STYLE["palette"], 10)
    extra = sorted(n for n in names if n not in order)
    slots = {name: i for i, name in enumerate([*order, *extra])}
    return {n: palette[slots[n] % len(palette)] for n in names}


def _series(frame: pl.DataFrame, always: str) -> tuple[pl.DataFrame, list[str], dict[str, tuple]]:
    """`frame` with a `series` column (the run's label in the legend), the labels in display order and their
    colours.

    The label leads with `always` (defense or tuning), or, when that is the same for every row, with the
    first of defense, tuning, base model that varies; the other varying ones follow ("rmft / lora"). When
    only the lead varies, colours are the fixed ones of DEFENSES / TUNING_ORDER; otherwise every
    series gets its own colour."""
    run_columns = ("defense", "tuning", "base_model")
    varying = [c for c in run_columns if frame[c].n_unique() > 1]
    lead = always if always in varying or not varying else varying[0]
    rows = frame.select(*run_columns).unique().to_dicts()
    rows.sort(key=lambda r: (defense_rank(r[lead]) if lead == "defense" else tuning_rank(r[lead])
                             if lead == "tuning" else (0, r[lead]),
                             defense_rank(r["defense"]), tuning_rank(r["tuning"]), r["base_model"]))
    labels = [" / ".join(str(r[c]) for c in [lead, *(v for v in varying if v != lead)]) for r in rows]
    names = pl.DataFrame({**{c: [r[c] for r in rows] for c in run_columns}, "series": labels})
    frame = frame.join(names, on=list(run_columns), how="left")
    if varying in ([], [lead]):
        order = DEFENSES if lead == "defense" else TUNING_ORDER if lead == "tuning" else ()
        fixed = _colors([r[lead] for r in rows], order)
        colors = {label: fixed[r[lead]] for label, r in zip(labels, rows)}
    else:
        import seaborn as sns

        palette = sns.color_palette(STYLE["palette"] if len(labels) <= 10 else "husl", len(labels))
        colors = dict(zip(labels, palette))
    return frame, labels, colors


def _legend_outside(fig, axes) -> None:
    """One legend for all panels, right of them: the union of the panels' entries, in order."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if entries:
        width, height = fig.get_size_inches()
        fig.set_size_inches(width + 1.8, height)  # room for the legend, so the panels keep their size
        fig.legend(list(entries.values()), list(entries), loc="outside right center", fontsize="small",
                   frameon=False)


def _values(metrics: pl.DataFrame, names: Sequence[str]) -> pl.DataFrame:
    return metrics.filter(pl.col("metric").is_in(list(names)) & pl.col("value").is_not_null()
                          & pl.col("value").is_not_nan())


def _panel_title(base_model: str, tuning: str, prompt_set: str, panels: Sequence[tuple]) -> str:
    """"prompts: <set>", led by base model / tuning when the figure's panels differ in them."""
    title = f"prompts: {prompt_set}"
    if len({(b, t) for b, t, _ in panels}) > 1:
        title = f"{base_model} / {tuning}, " + title
    return title


def _prompt_sets(frame: pl.DataFrame) -> list[str]:
    return sorted((p for p in frame["prompt_set"].unique().to_list() if p is not None), key=prompt_set_rank)


# ------------------------------------------------------------------------------------------
# Figures from the metrics table


def _baseline_strings(metrics: pl.DataFrame, entity_type: str, prompt_set: str | None = None) -> str:
    """"none extracted k of n strings (last checkpoint)" of each prompt set, for a panel's caption line."""
    rows = at_checkpoint(metrics.filter((pl.col("metric") == TER) & (pl.col("defense") == BASELINE)
                                        & (pl.col("entity_type") == entity_type) & pl.col("k").is_not_null()))
    if prompt_set is not None:
        rows = rows.filter(pl.col("prompt_set") == prompt_set)
    counts = rows.group_by("prompt_set").agg(pl.col("k").sum(), pl.col("n").sum(), pl.len().alias("runs"))
    counts = counts.sort(pl.col("prompt_set").map_elements(lambda v: prompt_set_rank(v)[0], return_dtype=pl.Int64))
    parts = [f"{p}: {k} of {n}" for p, k, n, _ in counts.rows()]
    pooled = f", summed over {counts['runs'].max()} runs" if counts.height and counts["runs"].max() > 1 else ""
    return f"{BASELINE} extracted " + ", ".join(parts) + f" strings (last checkpoint{pooled})" if parts else ""


def plot_metrics_by_checkpoint(metrics: pl.DataFrame, stem: str | os.PathLike,
                               comparisons: pl.DataFrame | None = None,
                               metric_names: Sequence[str] = (TER, SER, PPL),
                               entity_type: str = "ALL") -> list[Path]:
    """One panel per metric against epoch, a line per run (hue = defense; tuning/base model added to the
    label when they vary); the line is the mean over seeds. The band: with one seed the interval of each
    checkpoint's value (TER, SER: exact binomial; PPL: the bootstrap over test messages from `comparisons`),
    drawn when a panel has at most MAX_BANDS lines (more hide each other), with several ± one standard
    deviation over seeds. Extraction metrics (of `entity_type`) get one line style
    per prompt set when there are several, and the panel says how many strings the baseline extracted.
    Metrics without values are left out; none at all: []."""
    import seaborn as sns

    rows = _values(metrics, metric_names).filter(pl.col("entity_type").is_null()
                                                 | (pl.col("entity_type") == entity_type))
    if comparisons is not None and PPL in metric_names:
        # PPL with its interval over the test messages, per checkpoint (the comparison table's).
        ppl = comparisons.filter((pl.col("quantity") == PPL) & pl.col("checkpoint").is_not_null())
        rows = rows.join(ppl.select("base_model", "tuning", "defense", "checkpoint", pl.lit(PPL).alias("metric"),
                                    pl.col("ci_low").alias("ppl_low"), pl.col("ci_high").alias("ppl_high")),
                         on=["base_model", "tuning", "defense", "checkpoint", "metric"], how="left")
        rows = rows.with_columns(ci_low=pl.coalesce("ci_low", "ppl_low"),
                                 ci_high=pl.coalesce("ci_high", "ppl_high")).drop("ppl_low", "ppl_high")
    present = [m for m in metric_names if rows.filter(pl.col("metric") == m).height]
    if not present:
        return []
    rows, order, colors = _series(rows, always="defense")
    with _style():
        fig, axes = _figure(len(present))
        for ax, metric in zip(axes, present):
            data = rows.filter(pl.col("metric") == metric)
            sets = _prompt_sets(data)
            several_seeds = data.group_by("series", "checkpoint", "prompt_set").len()["len"].max() > 1
            styled = len(sets) > 1
            frame = data.rename({"series": "run", "prompt_set": "prompt set"}).to_pandas()
            sns.lineplot(data=frame, x="epoch", y="value", hue="run", hue_order=order, palette=colors,
                         style="prompt set" if styled else None, style_order=sets if styled else None,
                         errorbar="sd" if several_seeds else None, marker="o", markersize=4, ax=ax)
            if not several_seeds and data["series"].n_unique() <= MAX_BANDS:
                _interval_bands(ax, data, colors)
            label = LABELS.get(metric, metric)
            title = label.split(" (")[0] + (f", prompts: {sets[0]}" if len(sets) == 1 else "")
            ax.set(xlabel="epoch", ylabel=label, title=title)
        note = _baseline_strings(metrics, entity_type) if {TER, SER} & set(present) else ""
        if note:
            fig.supxlabel(note, fontsize="small")
        _legend_outside(fig, axes)
    return save(fig, stem)


def _interval_bands(ax, data: pl.DataFrame, colors: Mapping[str, tuple]) -> None:
    """A translucent band from ci_low to ci_high per series (and prompt set), where the rows have one."""
    for (name, _), band in data.filter(pl.col("ci_low").is_not_null()).group_by("series", "prompt_set"):
        band = band.sort("epoch")
        ax.fill_between(band["epoch"].to_numpy(), band["ci_low"].to_numpy(), band["ci_high"].to_numpy(),
                        color=colors[name], alpha=0.15, linewidth=0)


def plot_maxter(comparisons: pl.DataFrame, stem: str | os.PathLike, entity_type: str | None = None) -> list[Path]:
    """MaxTER(τ) of every defense against the baseline, with its paired bootstrap band (strings and messages
    resampled; the comparison table's `maxter` rows), one panel per prompt set (and base model / tuning when
    several), AURC with its interval and coverage in the legend. τ where no checkpoint qualifies are gaps
    (MaxTER is undefined there), and a note under the panel says so; a defense with no qualifying τ at all
    is listed with its smallest perplexity increase. `entity_type`: the TER's PII scope (default: e-mail
    addresses when measured, the paper's, else all types). []: no MaxTER rows."""
    import seaborn as sns

    curves = comparisons.filter(pl.col("quantity") == "maxter") if comparisons is not None else None
    if curves is None or curves.height == 0:
        return []
    if entity_type is None:
        types = set(curves["entity_type"].to_list())
        entity_type = PAPER_ENTITY_TYPE if PAPER_ENTITY_TYPE in types else "ALL"
    curves = curves.filter(pl.col("entity_type") == entity_type).sort("tau")
    summary = {(r["base_model"], r["tuning"], r["prompt_set"], r["defense"], r["quantity"]): r
               for r in comparisons.filter(pl.col("quantity").is_in(["aurc", "min_ppl_increase"])
                                           & (pl.col("entity_type") == entity_type)).iter_rows(named=True)}
    panels = sorted(curves.select("base_model", "tuning", "prompt_set").unique().rows(),
                    key=lambda p: (p[0], tuning_rank(p[1]), prompt_set_rank(p[2])))
    colors = _colors(curves["defense"].unique().to_list(), DEFENSES)
    taus = curves["tau"].unique().sort().to_list()
    with _style():
        fig, axes = _figure(len(panels))
        for ax, (base_model, tuning, prompt_set) in zip(axes, panels):
            panel = curves.filter((pl.col("base_model") == base_model) & (pl.col("tuning") == tuning)
                                  & (pl.col("prompt_set") == prompt_set))
            gaps = []
            for defense in sorted(panel["defense"].unique().to_list(), key=defense_rank):
                line = panel.filter(pl.col("defense") == defense)
                area = summary.get((base_model, tuning, prompt_set, defense, "aurc"), {})
                cheapest = summary.get((base_model, tuning, prompt_set, defense, "min_ppl_increase"), {})
                if area.get("value") is None:
                    label = (f"{defense} (AURC undefined: min ΔPPL {cheapest['value']:.1f} %)"
                             if cheapest.get("value") is not None else f"{defense} (AURC undefined)")
                else:
                    interval = (f" [{area['ci_low']:.0f}, {area['ci_high']:.0f}]" if area.get("ci_low") is not None
                                else " [no interval]")
                    label = f"{defense} (AURC {area['value']:.1f} %{interval} on {area['coverage']:.0f} % of τ)"
                if area.get("coverage") is None or area["coverage"] < 100:
                    gaps.append(defense)
                tau = line["tau"].to_numpy()
                values = line["value"].fill_null(float("nan")).to_numpy()
                ax.plot(tau, values, color=colors[defense], marker=".", label=label)
                low, high = (line[c].fill_null(float("nan")).to_numpy() for c in ("ci_low", "ci_high"))
                ax.fill_between(tau, low, high, color=colors[defense], alpha=0.15, linewidth=0)
            ax.axhline(0, color="grey", linewidth=0.8)
            ax.set(xlabel="perplexity budget τ (% PPL increase)", ylabel=f"MaxTER: TER reduction vs {BASELINE} (%)",
                   title=_panel_title(base_model, tuning, prompt_set, panels) + f", {entity_type}")
            ax.set_xlim(min(taus), max(taus))
            defined = panel["value"].drop_nulls()
            ax.set_ylim(min([0.0, *defined.to_list(), *panel["ci_low"].drop_nulls().to_list()]) - 5, 105)
            ax.legend(fontsize="small", loc="lower right")
            lines = [ax.get_xlabel()]
            evidence = panel["baseline_strings"].drop_nulls()
            if evidence.len():
                lines.append(f"{BASELINE} extracted {evidence[0]} distinct string{'' if evidence[0] == 1 else 's'} "
                             f"(any checkpoint)")
            if defined.is_empty():
                ax.text(0.5, 0.6, "no checkpoint of any defense\nwithin the τ grid", transform=ax.transAxes,
                        ha="center", va="center", color="grey")
            elif gaps:
                lines.append("gaps: MaxTER undefined (no checkpoint within τ)")
            ax.set_xlabel("\n".join(lines))
        sns.despine(fig=fig)
    return save(fig, stem)


def plot_mia_auc(metrics: pl.DataFrame, stem: str | os.PathLike,
                 attacks: Sequence[str] | None = None) -> list[Path]:
    """ROC AUC of the membership-inference attacks against epoch: one panel per attack (`attacks`, default all
    present), a line per tuning method (defense/base model added when they vary), chance (0.5) dashed.
    With one seed the band is the bootstrap CI of the AUC (drawn for up to three lines); with several,
    ± one standard deviation over seeds. []: no mia_auc metric."""
    import seaborn as sns

    rows = _values(metrics, [m for m in metrics["metric"].unique().to_list() if m.startswith(per(MIA_AUC, ""))])
    if attacks is not None:
        rows = rows.filter(pl.col("metric").is_in([per(MIA_AUC, a) for a in attacks]))
    if rows.height == 0:
        return []
    rows = rows.with_columns(attack=pl.col("metric").str.split("/").list.get(1))
    present = sorted(rows["attack"].unique().to_list(), key=attack_rank)
    rows, order, colors = _series(rows, always="tuning")
    with _style():
        fig, axes = _figure(len(present), n_rows=2 if len(present) > 3 else 1)
        for ax, attack in zip(axes, present):
            data = rows.filter(pl.col("attack") == attack)
            several_seeds = data.group_by("series", "checkpoint").len()["len"].max() > 1
            sns.lineplot(data=data.rename({"series": "run"}).to_pandas(), x="epoch", y="value", hue="run",
                         hue_order=order, palette=colors, errorbar="sd" if several_seeds else None,
                         marker="o", markersize=4, ax=ax)
            if not several_seeds and len(order) <= 3:  # more bands than that hide each other
                for name in order:
                    band = data.filter((pl.col("series") == name) & pl.col("ci_low").is_not_null())
                    band = band.sort("epoch")
                    if band.height:
                        ax.fill_between(band["epoch"].to_numpy(), band["ci_low"].to_numpy(),
                                        band["ci_high"].to_numpy(), color=colors[name], alpha=0.2,
                                        linewidth=0)
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
            ax.set(xlabel="epoch", ylabel="ROC AUC", title=f"{attack_label(attack)} attack")
        _legend_outside(fig, axes)
    return save(fig, stem)


def plot_extraction_by_repetition(metrics: pl.DataFrame, stem: str | os.PathLike,
                                  checkpoint: str | None = None, entity_type: str = "ALL") -> list[Path]:
    """Share of true PII extracted (%) by how often it occurs in the training data (`piimem.report.tables.
    extraction_by_repetition`, last checkpoint), bars per defense with the exact binomial interval as error
    bars (one seed; several: ± one standard deviation over seeds), one panel per prompt set (and base model /
    tuning when several); the number of true PII per bucket under each tick, and how many the baseline
    extracted. []: no ter_rep metric."""
    table = extraction_by_repetition(metrics, checkpoint=checkpoint, entity_type=entity_type)
    value = next((c for c in (table.columns if table is not None else []) if c.startswith("TER (%)")
                  and not c.endswith(("CI low", "CI high"))), None)
    if table is None or value is None or table[value].drop_nulls().len() == 0:
        return []
    panels = table.select("base model", "tuning", "prompt set").unique(maintain_order=True).rows()
    colors = _colors(table["defense"].unique().to_list(), DEFENSES)
    low, high = (f"{value} CI low", f"{value} CI high") if f"{value} CI low" in table.columns else (
        f"{value} seeds CI low", f"{value} seeds CI high")
    with _style():
        fig, axes = _figure(len(panels))
        for ax, (base_model, tuning, prompt_set) in zip(axes, panels):
            data = table.filter((pl.col("base model") == base_model) & (pl.col("tuning") == tuning)
                                & (pl.col("prompt set") == prompt_set))
            buckets = sorted(data["repetitions"].unique().to_list(), key=bucket_rank)
            defenses = sorted(data["defense"].unique().to_list(), key=defense_rank)
            width = 0.8 / len(defenses)
            for i, defense in enumerate(defenses):
                rows = {r["repetitions"]: r for r in data.filter(pl.col("defense") == defense).iter_rows(named=True)}
                x = np.arange(len(buckets)) - 0.4 + width * (i + 0.5)
                heights = np.array([_or_nan(rows.get(b, {}).get(value)) for b in buckets])
                lows = np.array([_or_nan(rows.get(b, {}).get(low)) for b in buckets])
                highs = np.array([_or_nan(rows.get(b, {}).get(high)) for b in buckets])
                ax.bar(x, np.nan_to_num(heights), width, color=colors[defense], label=defense)
                errors = [np.nan_to_num(heights - lows), np.nan_to_num(highs - heights)]
                ax.errorbar(x, np.nan_to_num(heights), yerr=errors, fmt="none", ecolor="black", elinewidth=0.8,
                            capsize=2)
            counts = {b: data.filter(pl.col("repetitions") == b)["TER n"].max() for b in buckets}
            ax.set_xticks(range(len(buckets)), [f"{b}\n(n={counts[b]})" for b in buckets])
            ax.set(xlabel="occurrences in the training data\n" + _baseline_strings(metrics, entity_type, prompt_set),
                   ylabel="true PII extracted (%)", title=_panel_title(base_model, tuning, prompt_set, panels))
            ax.legend(title=None, fontsize="small")
    return save(fig, stem)


def _or_nan(value) -> float:
    return math.nan if value is None else float(value)


def plot_canary_exposure(metrics: pl.DataFrame, stem: str | os.PathLike,
                         checkpoint: str | None = None) -> list[Path]:
    """Canary exposure (bits) against the number of times the canary was planted, at the last checkpoint
    of each run (or `checkpoint`), one panel per entity type, a colour per defense (tuning/base model added
    when they vary): the extrapolated exposure solid, with the t interval over the cell's canaries as error
    bars (one seed) or a band of ± one standard deviation over seeds (several), the rank exposure dotted,
    its ceiling log2 |R| grey dashed. A log exposure axis when the extrapolated exposures pass ten times
    the ceiling. []: no canary metric."""
    import seaborn as sns
    from matplotlib.ticker import FuncFormatter

    families = ("canary_exposure", "canary_exposure_extrapolated", "canary_max_exposure")
    names = [m for m in metrics["metric"].unique().to_list() if m.split("/")[0] in families]
    rows = at_checkpoint(_values(metrics, names), checkpoint=checkpoint)
    rows = rows.with_columns(kind=pl.col("metric").str.split("/").list.get(0),
                             repetitions=pl.col("metric").str.split("/").list.get(1).cast(pl.Int64))
    exposure = rows.filter(pl.col("kind").is_in(families[:2]))
    if exposure.height == 0:
        return []
    exposure, order, colors = _series(exposure, always="defense")
    measures = {"canary_exposure_extrapolated": "extrapolated", "canary_exposure": "rank"}
    exposure = exposure.with_columns(measure=pl.col("kind").replace_strict(measures))
    types = sorted(exposure["entity_type"].unique().to_list())
    with _style():
        fig, axes = _figure(len(types))
        for ax, entity_type in zip(axes, types):
            data = exposure.filter(pl.col("entity_type") == entity_type)
            several_seeds = data.group_by("series", "measure", "repetitions").len()["len"].max() > 1
            sns.lineplot(data=data.rename({"series": "run"}).to_pandas(), x="repetitions", y="value", hue="run",
                         hue_order=order, palette=colors, style="measure",
                         style_order=[m for m in measures.values() if m in set(data["measure"])],
                         dashes={"extrapolated": "", "rank": (1, 2)}, errorbar="sd" if several_seeds else None,
                         marker="o", ax=ax)
            if not several_seeds:
                cells = data.filter((pl.col("measure") == "extrapolated") & pl.col("ci_low").is_not_null())
                for series in order:
                    part = cells.filter(pl.col("series") == series).sort("repetitions")
                    if part.height:
                        ax.errorbar(part["repetitions"].to_list(), part["value"].to_list(),
                                    yerr=[(part["value"] - part["ci_low"]).to_list(),
                                          (part["ci_high"] - part["value"]).to_list()],
                                    fmt="none", ecolor=colors[series], capsize=2, linewidth=0.8)
            ceiling = rows.filter((pl.col("kind") == "canary_max_exposure")
                                  & (pl.col("entity_type") == entity_type))
            if ceiling.height:
                top = ceiling["value"].max()
                ax.axhline(top, color="grey", linestyle="--", linewidth=0.8, label="rank maximum (log2 |R|)")
                if data["value"].min() > 0 and data["value"].max() > 10 * top:
                    ax.set_yscale("log")
            if data["repetitions"].min() > 0 and data["repetitions"].max() > 10 * data["repetitions"].min():
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 10, 100, not 10^0...
            ax.set(xlabel="times planted in the corpus", ylabel="exposure (bits)", title=f"canaries: {entity_type}")
        _legend_outside(fig, axes)
    return save(fig, stem)


def plot_privacy_utility(metrics: pl.DataFrame, stem: str | os.PathLike, privacy: str = TER,
                         prompt_set: str | None = None, entity_type: str = "ALL",
                         checkpoint: str | None = None) -> list[Path]:
    """Privacy against utility: one point per run (base model, defense, tuning, seed) at its last checkpoint
    (or `checkpoint`), x = ppl_mean, y = `privacy` (a metric name: "ter", "ser" — of `entity_type` on
    `prompt_set`, default the first present in BUILT_IN_PROMPT_SETS — or "mia_auc/loss", ...), with the
    privacy metric's interval as a vertical error bar (exact binomial for rates, bootstrap for AUCs),
    colour = defense, marker = tuning, each point labelled. The Pareto front (`piimem.metrics.pareto_front`,
    both lower is better, on the point estimates) is drawn as a step line. []: no value of `privacy` or no
    ppl_mean."""
    import seaborn as sns

    rows = _values(metrics, [privacy])
    if rows.height and rows["prompt_set"].is_not_null().any():
        sets = _prompt_sets(rows)
        prompt_set = prompt_set if prompt_set is not None else sets[0]
        rows = rows.filter((pl.col("prompt_set") == prompt_set) & (pl.col("entity_type") == entity_type))
    keys = list(RUN_KEYS)
    privacy_at = at_checkpoint(rows, checkpoint=checkpoint).select(*keys, "checkpoint", y="value", y_low="ci_low",
                                                                   y_high="ci_high")
    ppl = _values(metrics, [PPL]).select(*keys, "checkpoint", x="value")
    points = privacy_at.join(ppl, on=[*keys, "checkpoint"], how="inner")
    if points.height == 0:
        return []
    points = points.sort(pl.col("defense").map_elements(lambda d: defense_rank(d)[0], return_dtype=pl.Int64),
                         "defense", "tuning", "base_model", "seed")
    # (utility cost, privacy cost): the front comes back sorted by perplexity, the step line's order.
    front = pareto_front(list(zip(points["x"].to_list(), points["y"].to_list())))
    ylabel = LABELS.get(privacy, privacy)
    if privacy.startswith(per(MIA_AUC, "")):
        ylabel = f"{attack_label(privacy.split('/', 1)[1])} attack ROC AUC"
    if prompt_set is not None and rows["prompt_set"].is_not_null().any():
        ylabel += f" [{prompt_set}]"
    varying = [c for c in ("tuning", "base_model") if points[c].n_unique() > 1]
    colors = _colors(points["defense"].unique().to_list(), DEFENSES)
    tunings = sorted(points["tuning"].unique().to_list(), key=tuning_rank)
    with _style():
        fig, (ax,) = _figure(1)
        fig.set_size_inches(PANEL_SIZE[0] * 1.5, PANEL_SIZE[1] * 1.4)
        sns.scatterplot(data=points.to_pandas(), x="x", y="y", hue="defense", palette=colors,
                        hue_order=sorted(colors, key=defense_rank), style="tuning", style_order=tunings, s=50,
                        ax=ax)
        for row in points.iter_rows(named=True):
            label = " / ".join([row["defense"], *(str(row[c]) for c in varying), f"s{row['seed']}"])
            ax.annotate(label, (row["x"], row["y"]), xytext=(4, 3), textcoords="offset points",
                        fontsize="x-small")
        bars = points.filter(pl.col("y_low").is_not_null())
        if bars.height:
            ax.errorbar(bars["x"].to_numpy(), bars["y"].to_numpy(),
                        yerr=[(bars["y"] - bars["y_low"]).to_numpy(), (bars["y_high"] - bars["y"]).to_numpy()],
                        fmt="none", ecolor="grey", elinewidth=0.8, capsize=2, zorder=0)
        on_front = points[front]
        ax.step(on_front["x"].to_numpy(), on_front["y"].to_numpy(), where="post", color="black", linewidth=1,
                linestyle=":", label="Pareto front")
        ax.set(xlabel="PPL (mean over examples; lower is better)", ylabel=f"{ylabel} (lower is better)",
               title="privacy against utility")
        ax.legend(fontsize="small")
    return save(fig, stem)


def plot_auc_by_val_ppl(metrics: pl.DataFrame, stem: str | os.PathLike, attack: str = HEADLINE_ATTACK) -> list[Path]:
    """Privacy against utility over training, Hou et al.'s view: one panel per base model, one line per run
    (tuning method; defense added where it varies) through its checkpoints in order, x = validation PPL
    (val_ppl_mean), y = the attack's ROC AUC with its bootstrap interval as error bars, the last checkpoint
    ringed; the base model's validation PPL as a dotted vertical line, chance (0.5) dashed. Methods compared
    at one x are compared at matched utility. []: no validation perplexity or no AUC."""
    import seaborn as sns

    keys = ["base_model", "defense", "tuning", "seed", "checkpoint"]
    auc = _values(metrics, [per(MIA_AUC, attack)]).select(*keys, "epoch", y="value", y_low="ci_low", y_high="ci_high")
    val = _values(metrics, [VAL_PPL]).select(*keys, x="value")
    points = auc.join(val, on=keys, how="inner")
    if points.height == 0:
        return []
    points, order, colors = _series(points, always="tuning")
    bases = sorted(points["base_model"].unique().to_list())
    base_ppl = _values(metrics, [VAL_PPL_BASE]).group_by("base_model").agg(pl.col("value").mean())
    base_ppl = dict(base_ppl.rows())
    with _style():
        fig, axes = _figure(len(bases), n_rows=2 if len(bases) > 3 else 1)
        for ax, base_model in zip(axes, bases):
            data = points.filter(pl.col("base_model") == base_model).sort("series", "seed", "epoch")
            sns.lineplot(data=data.rename({"series": "run"}).to_pandas(), x="x", y="y", hue="run", hue_order=order,
                         palette=colors, units="seed", estimator=None, sort=False, marker="o", markersize=4, ax=ax)
            bars = data.filter(pl.col("y_low").is_not_null())
            if bars.height:
                ax.errorbar(bars["x"].to_numpy(), bars["y"].to_numpy(),
                            yerr=[(bars["y"] - bars["y_low"]).to_numpy(), (bars["y_high"] - bars["y"]).to_numpy()],
                            fmt="none", ecolor="grey", elinewidth=0.6, capsize=1.5, zorder=0)
            last = data.group_by("series", "seed").agg(pl.all().sort_by("epoch").last())
            ax.scatter(last["x"].to_numpy(), last["y"].to_numpy(), s=70, facecolors="none", edgecolors="black",
                       linewidths=0.8, zorder=3)
            if base_model in base_ppl:
                ax.axvline(base_ppl[base_model], color="grey", linestyle=":", linewidth=0.8)
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
            ax.set(xlabel="validation PPL (lower is better; dotted: base model)",
                   ylabel=f"{attack_label(attack)} attack ROC AUC", title=base_model)
        _legend_outside(fig, axes)
    return save(fig, stem)


# ------------------------------------------------------------------------------------------
# Figures from MIA score files


def _score_table(scores: pl.DataFrame | str | os.PathLike, need: Sequence[str]) -> tuple[pl.DataFrame, str]:
    """A MIA score table, its rows of the members' original text only (the headline view; a defended
    run's file also holds the trained-text view)."""
    name = "scores" if isinstance(scores, pl.DataFrame) else str(scores)
    table = scores if isinstance(scores, pl.DataFrame) else pl.read_parquet(scores)
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: MIA score table lacks column(s) {missing}; it has {table.columns}")
    if "member_text" in table.columns:
        table = table.filter(pl.col("member_text") == "original").drop("member_text")
    return table, name


def plot_roc_curves(scores: pl.DataFrame | str | os.PathLike, stem: str | os.PathLike,
                    attacks: Sequence[str] | None = None, title: str | None = None) -> list[Path]:
    """ROC curves of the attacks in one MIA score file (columns member and one score per attack, larger =
    member) on log-log axes, one line per attack with its AUC, the chance diagonal dashed
    (`piimem.metrics.roc_curve`; examples without a score are left out per attack). The axes start at
    1/(number of non-members) and 1/(number of members), the smallest non-zero rates. []: no rows or no
    attack column."""
    from matplotlib.lines import Line2D

    from piimem.metrics import roc_auc

    table, _ = _score_table(scores, ["member"])
    names = [c for c in table.columns if c not in SCORE_FILE_COLUMNS]
    names = sorted([a for a in names if attacks is None or a in attacks], key=attack_rank)
    if table.height == 0 or not names:
        return []
    import seaborn as sns

    palette = sns.color_palette(STYLE["palette"], max(len(names), 1))
    lowest = 1.0
    with _style():
        fig, (ax,) = _figure(1)
        fig.set_size_inches(PANEL_SIZE[0] * 1.2, PANEL_SIZE[1] * 1.3)
        for color, attack in zip(palette, names):
            kept = table.filter(pl.col(attack).is_not_null() & pl.col(attack).is_not_nan())
            labels, values = kept["member"].to_numpy(), kept[attack].to_numpy()
            fpr, tpr, _ = roc_curve(values, labels)
            lowest = min(lowest, 1 / max(int((~labels.astype(bool)).sum()), 1), 1 / max(int(labels.sum()), 1))
            shown = (fpr > 0) & (tpr > 0)  # log axes cannot show a zero rate
            label = f"{attack_label(attack)} (AUC {roc_auc(values, labels):.3f})"
            ax.plot(fpr[shown], tpr[shown], color=color, label=label)
        ax.plot([lowest, 1], [lowest, 1], color="grey", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set(xlim=(lowest, 1), ylim=(lowest, 1), xlabel="false positive rate", ylabel="true positive rate",
               title=title or "membership inference ROC")
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], color="grey", linestyle="--", linewidth=0.8))
        ax.legend(handles, [*labels, "chance"], fontsize="small", loc="lower right")
    return save(fig, stem)


def plot_loss_distributions(models: Mapping[str, pl.DataFrame | str | os.PathLike],
                            stem: str | os.PathLike, bins: int = 30) -> list[Path]:
    """Member vs non-member distribution of the per-example mean token NLL, one panel per model:
    `models` maps a panel title (e.g. "pre-trained", "none-lora-s1 c30") to a table or parquet file with
    columns member and nll_mean (a MIA score file; for the base model, its reference statistics joined
    with the member labels on index). Densities per class, common bins per panel. []: no model given or
    no rows."""
    import seaborn as sns

    tables = {}
    for title, source in models.items():
        table, _ = _score_table(source, ["member", "nll_mean"])
        table = table.filter(pl.col("nll_mean").is_not_null() & pl.col("nll_mean").is_not_nan())
        if table.height:
            tables[title] = table.select(pl.when(pl.col("member")).then(pl.lit("member"))
                                         .otherwise(pl.lit("non-member")).alias("class"), "nll_mean")
    if not tables:
        return []
    palette = dict(zip(("member", "non-member"), sns.color_palette(STYLE["palette"], 2)))
    with _style():
        fig, axes = _figure(len(tables))
        for ax, (title, table) in zip(axes, tables.items()):
            edges = np.histogram_bin_edges(table["nll_mean"].to_numpy(), bins=bins)
            sns.histplot(data=table.to_pandas(), x="nll_mean", hue="class",
                         hue_order=["member", "non-member"], palette=palette, bins=edges, stat="density",
                         common_norm=False, element="step", ax=ax)
            ax.set(xlabel="mean token NLL (nats)", ylabel="density", title=title)
    return save(fig, stem)


# ------------------------------------------------------------------------------------------
# All figures


def plot_targeted_attacks(metrics: pl.DataFrame, stem: str | os.PathLike) -> list[Path]:
    """Accuracy (%) of each targeted attack per defense and checkpoint scored (the defenses side by side when
    one checkpoint was scored, else epoch on x with points offset per defense) with its exact binomial
    interval (one seed; several: ± one standard deviation over seeds), one panel per attack (association:
    per prompt set) on the e-mail targets where measured (else all types), the base model's accuracy on the
    same targets dashed, inference's chance level 100/K dotted. []: no targeted metric."""
    from piimem.report.tables import TARGETED_ATTACKS

    names = [*TARGETED_ATTACKS, *(m + BASE for m in TARGETED_ATTACKS)]
    rows = _values(metrics, names)
    if rows.filter(pl.col("metric").is_in(list(TARGETED_ATTACKS))).height == 0:
        return []
    scope = "EMAIL_ADDRESS" if (rows["entity_type"] == "EMAIL_ADDRESS").any() else "ALL"
    rows = rows.filter(pl.col("entity_type") == scope)
    panels = [(m, p) for m in TARGETED_ATTACKS for p in sorted(
        {p for p in rows.filter(pl.col("metric") == m)["prompt_set"].to_list()}, key=lambda p: p or "")]
    colors = _colors(rows["defense"].unique().to_list(), DEFENSES)
    # One scored checkpoint (targeted_checkpoints: last): defenses side by side; several: against epoch.
    one_epoch = rows["epoch"].n_unique() == 1
    with _style():
        fig, axes = _figure(len(panels), n_rows=math.ceil(len(panels) / 3))
        for ax, (metric, prompt_set) in zip(axes, panels):
            data = rows.filter((pl.col("metric") == metric) & pl.col("prompt_set").eq_missing(prompt_set))
            defenses = sorted(data["defense"].unique().to_list(), key=defense_rank)
            for i, defense in enumerate(defenses):
                runs = data.filter(pl.col("defense") == defense).group_by("epoch").agg(
                    pl.col("value").mean().alias("mean"), pl.col("value").std().alias("sd"),
                    pl.col("ci_low").first(), pl.col("ci_high").first(), pl.len().alias("seeds")).sort("epoch")
                x = np.full(runs.height, float(i)) if one_epoch else \
                    runs["epoch"].to_numpy() + 0.04 * (i - (len(defenses) - 1) / 2)
                y = runs["mean"].to_numpy()
                several = runs["seeds"].max() > 1
                low = y - runs["sd"].fill_null(0).to_numpy() if several else runs["ci_low"].to_numpy()
                high = y + runs["sd"].fill_null(0).to_numpy() if several else runs["ci_high"].to_numpy()
                ax.errorbar(x, y, yerr=[np.nan_to_num(y - low), np.nan_to_num(high - y)], fmt="o-",
                            color=colors[defense], label=defense, capsize=2, linewidth=1)
            base = rows.filter((pl.col("metric") == metric + BASE) & pl.col("prompt_set").eq_missing(prompt_set))
            if base.height:
                ax.axhline(base["value"].mean(), color="grey", linestyle="--", linewidth=0.8, label="base model")
            candidates = metrics.filter((pl.col("metric") == "pii_inference_candidates")
                                        & (pl.col("entity_type") == scope))["value"].drop_nulls()
            if metric == "pii_inference_acc" and candidates.len():
                ax.axhline(100 / candidates.mean(), color="grey", linestyle=":", linewidth=0.8,
                           label="chance (100/K)")
            n = data["n"].max()
            title = TARGETED_ATTACKS[metric] + (f": {prompt_set}" if prompt_set else "")
            if one_epoch:
                ax.set_xticks(range(len(defenses)), defenses)
            ax.set(xlabel=f"defense (epoch {rows['epoch'][0]:g})" if one_epoch else "epoch", ylabel="accuracy (%)",
                   title=f"{title} ({scope}, n={n})")
        _legend_outside(fig, axes)
    return save(fig, stem)


def _maxter_scope(metrics: pl.DataFrame) -> str:
    scopes = extraction_entity_types(metrics)
    return scopes[0] if scopes else "ALL"


def build_figures(metrics: pl.DataFrame, comparisons: pl.DataFrame | None, folder: str | os.PathLike,
                  roc_scores: pl.DataFrame | str | os.PathLike | None = None,
                  loss_models: Mapping[str, pl.DataFrame | str | os.PathLike] | None = None) -> list[Path]:
    """Every figure that has data, under `folder` with the stems of `FIGURE_STEMS`; the paths written.

    roc_curves needs `roc_scores` (one MIA score file) and loss_distributions `loss_models` (see
    `plot_loss_distributions`); privacy_utility_ter plots TER, privacy_utility_auc the LOSS attack's AUC
    against test PPL at the last checkpoint, auc_by_val_ppl against validation PPL at every checkpoint.
    """
    folder = Path(folder)
    metrics = original_view(metrics)  # membership inference on the members' original text, the headline
    paths = plot_metrics_by_checkpoint(metrics, folder / "metrics_by_checkpoint", comparisons)
    paths += plot_maxter(comparisons, folder / "maxter", entity_type=_maxter_scope(metrics))
    paths += plot_mia_auc(metrics, folder / "mia_auc_by_epoch")
    if roc_scores is not None:
        paths += plot_roc_curves(roc_scores, folder / "roc_curves")
    if loss_models:
        paths += plot_loss_distributions(loss_models, folder / "loss_distributions")
    paths += plot_extraction_by_repetition(metrics, folder / "extraction_by_repetition")
    paths += plot_canary_exposure(metrics, folder / "canary_exposure")
    paths += plot_targeted_attacks(metrics, folder / "targeted_attacks")
    paths += plot_privacy_utility(metrics, folder / "privacy_utility_ter", privacy=TER)
    paths += plot_privacy_utility(metrics, folder / "privacy_utility_auc", privacy=LOSS_AUC)
    paths += plot_auc_by_val_ppl(metrics, folder / "auc_by_val_ppl")
    return paths
