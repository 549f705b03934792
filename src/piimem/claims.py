"""The claims table: which findings of the two papers the configuration's runs reproduce.

One row per claim (and per experiment the claim can be checked in: base model, tuning, prompt set, or
tuning method), computed from metrics.parquet alone: the claim, the paper's figure with the model and data
it was measured on (`piimem.papers`), our number (with its bootstrap CI where one exists), what we
compared, and a verdict: `holds`, `does not hold`, or `not testable` with the reason. The verdict rules
(`RULES`, also in the README) are deliberately plain: the direction the paper reports, checked on the
numbers, never on how close they come to the paper's.

RMFT claims use the paper's scope: e-mail addresses (TER/SER of EMAIL_ADDRESS when the run measured
them) and the paper-scope RMFT variants (`tables.is_paper_rmft`). Membership-inference claims use the
undefended runs (defense `none`), the members' original text, the LOSS attack, at the table epoch
(`report.finetuning_epoch`; the last checkpoint when null); a run whose perplexity is no lower than its
base model's has not learnt the data and is left out of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from piimem import papers
from piimem.metrics import TAU_GRID, spearman
from piimem.tables import (
    BASELINE,
    PAPER_ENTITY_TYPE,
    _frame,
    at_checkpoint,
    bucket_rank,
    by_checkpoint,
    defense_kind,
    defense_rank,
    is_paper_rmft,
    maxter_curves,
    original_view,
    prompt_set_rank,
    select_metrics,
    series_reduction,
    tuning_rank,
)

HOLDS, FAILS, UNTESTABLE = "holds", "does not hold", "not testable"
# "A small perplexity cost": the paper's +5.73 % with room for noise; above it a defense changes the model.
SMALL_PPL_INCREASE = 10.0
# "Near chance" for an AUC without a bootstrap interval.
CHANCE_MARGIN = 0.05
# Fewest checkpoints for a trend over epochs (two points always give a correlation of +-1).
MIN_TREND_POINTS = 3

RULES = {
    "rmft_ter": "holds when RMFT's TER reduction vs none (mean over checkpoints) is above 0",
    "rmft_ser": "holds when RMFT's SER reduction vs none (mean over checkpoints) is above 0",
    "rmft_ppl": f"holds when RMFT's perplexity increase vs none (mean over checkpoints) is at most "
                f"{SMALL_PPL_INCREASE:g} %",
    "rmft_vs_dedup_ter": "holds when RMFT's TER reduction exceeds deduplication's",
    "rmft_vs_dedup_aurc": "holds when RMFT's AURC exceeds deduplication's, or RMFT has a defined AURC and "
                          "deduplication none; does not hold in the reverse cases; not testable when neither "
                          "has a checkpoint within the tau grid",
    "repetition": "holds when the Spearman correlation of repetition bucket and extraction rate (baseline, "
                  "last checkpoint, non-empty buckets, at least 2) is above 0",
    "parameter_vs_prompt": "holds when every parameter-based method's LOSS AUC exceeds every prompt-based "
                           "method's (runs that did not beat their base model's perplexity left out)",
    "auc_grows": f"holds when the Spearman correlation of epoch and LOSS AUC is above 0 (at least "
                 f"{MIN_TREND_POINTS} checkpoints)",
    "prompt_near_chance": f"holds when the LOSS AUC's bootstrap interval contains 0.5 (without one: within "
                          f"{CHANCE_MARGIN:g} of 0.5); not testable when the run did not beat its base model's "
                          f"perplexity",
    "lora_mlp_vs_attention": "holds when LoRA on MLP projections (lora_mlp) has a higher LOSS AUC than LoRA on "
                             "attention (lora_attention)",
    "model_size": "holds when the Spearman correlation of GPT-2 size and full fine-tuning's LOSS AUC is above 0 "
                  "(at least 2 sizes)",
}

COLUMNS = ("claim", "paper", "paper: model, data", "ours", "CI low", "CI high", "measured on", "verdict", "why")


@dataclass
class Claim:
    rule: str
    claim: str
    paper: str
    paper_label: str
    measured_on: str = ""
    ours: float | None = None
    ci: tuple[float, float] | None = None
    verdict: str = UNTESTABLE
    why: str = ""

    def row(self) -> dict:
        low, high = self.ci if self.ci else (None, None)
        return {"claim": self.claim, "paper": self.paper, "paper: model, data": self.paper_label,
                "ours": _number(self.ours), "CI low": low, "CI high": high, "measured on": self.measured_on,
                "verdict": self.verdict, "why": self.why or RULES[self.rule]}


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def _direction(value: float | None, why: str) -> tuple[str, str]:
    if value is None or math.isnan(value):
        return UNTESTABLE, why
    return (HOLDS if value > 0 else FAILS), ""


# ------------------------------------------------------------------------------------------
# RMFT (Joshi & Smith)


def _rmft_contexts(metrics: pl.DataFrame) -> list[tuple[str, str, str, str]]:
    """(base model, tuning, prompt set, entity type) of every extraction experiment with a `none` run."""
    ter = select_metrics(metrics, ["ter"], defense=BASELINE)
    if ter.height == 0:
        return []
    types = set(ter["entity_type"].to_list())
    entity_type = PAPER_ENTITY_TYPE if PAPER_ENTITY_TYPE in types else "ALL"
    contexts = ter.filter(pl.col("entity_type") == entity_type).select("base_model", "tuning", "prompt_set").unique()
    return sorted(((b, t, p, entity_type) for b, t, p in contexts.rows()),
                  key=lambda c: (c[0], tuning_rank(c[1]), prompt_set_rank(c[2])))


def rmft_claims(metrics: pl.DataFrame, taus: Sequence[float] = TAU_GRID) -> list[Claim]:
    label = papers.RMFT_TER_REDUCTION.label
    templates = [
        ("rmft_ter", "RMFT reduces TER vs plain fine-tuning (reduction, %)",
         f"{papers.RMFT_TER_REDUCTION.value:.2f}"),
        ("rmft_ser", "RMFT reduces SER vs plain fine-tuning (reduction, %)",
         f"{papers.RMFT_SER_REDUCTION.value:.2f}"),
        ("rmft_ppl", "RMFT costs little perplexity (increase, %)", f"{papers.RMFT_PPL_INCREASE.value:.2f}"),
        ("rmft_vs_dedup_ter", "RMFT beats deduplication on TER reduction (difference, points)", "RMFT ahead"),
        ("rmft_vs_dedup_aurc", "RMFT beats deduplication on AURC (difference, points)", "RMFT ahead"),
    ]
    contexts = _rmft_contexts(metrics)
    if not contexts:
        return [Claim(rule, claim, paper, label, why="needs extraction metrics (extraction.prompt_sets) and a "
                      "run of the defense none") for rule, claim, paper in templates]
    defenses = sorted(set(metrics["defense"].to_list()), key=defense_rank)
    rmfts = [d for d in defenses if is_paper_rmft(d)]
    dedups = [d for d in defenses if defense_kind(d) == "dedup"]
    claims = []
    for base_model, tuning, prompt_set, entity_type in contexts:
        where = f"{base_model}, {tuning}, prompts {prompt_set}, {entity_type}"
        keys = ("base_model", "tuning", "prompt_set", "defense")
        rates = select_metrics(metrics, ["ter", "ser"], base_model=base_model, tuning=tuning,
                               prompt_set=prompt_set, entity_type=entity_type)
        ter, ser = (by_checkpoint(rates, keys, m) for m in ("ter", "ser"))
        ppl = by_checkpoint(select_metrics(metrics, ["ppl_mean"], base_model=base_model, tuning=tuning),
                            ("base_model", "tuning", "defense"), "ppl_mean")
        curves = maxter_curves(metrics.filter((pl.col("base_model") == base_model) & (pl.col("tuning") == tuning)),
                               entity_type=entity_type, taus=taus)
        curve = {} if curves is None else {
            r["defense"]: r for r in curves.filter(pl.col("prompt_set") == prompt_set)
            .unique("defense", maintain_order=True).iter_rows(named=True)}

        def key(defense: str) -> tuple:
            return base_model, tuning, prompt_set, defense

        base_ter = ter.get(key(BASELINE))
        if not rmfts:
            claims += [Claim(rule, claim, paper, label, where, why="needs an RMFT run of the paper's scope "
                             "(defenses: rmft, rmft.scope: email)") for rule, claim, paper in templates]
            continue
        for rmft in rmfts:
            on = f"{where}: {rmft} vs {BASELINE}"
            no_extraction = base_ter is not None and all(v == 0 for v in base_ter.values() if v is not None)
            reduction = {m: series_reduction(series.get(key(rmft)), series.get(key(BASELINE)))
                         for m, series in (("ter", ter), ("ser", ser))}
            for rule, metric, (claim, paper) in (("rmft_ter", "ter", templates[0][1:]),
                                                 ("rmft_ser", "ser", templates[1][1:])):
                why = ("the baseline extracted nothing, so there is nothing to reduce" if no_extraction
                       else f"no {metric.upper()} of {rmft} and {BASELINE} at shared checkpoints")
                verdict, why = _direction(reduction[metric], why)
                claims.append(Claim(rule, claim, paper, label, on, reduction[metric], verdict=verdict, why=why))
            increase = series_reduction(ppl.get((base_model, tuning, rmft)), ppl.get((base_model, tuning, BASELINE)))
            increase = None if increase is None else -increase
            verdict = UNTESTABLE if increase is None else HOLDS if increase <= SMALL_PPL_INCREASE else FAILS
            claims.append(Claim("rmft_ppl", *templates[2][1:], label, on, increase, verdict=verdict,
                                why="" if increase is not None else "no perplexity of both runs"))
            if not dedups:
                claims += [Claim(rule, claim, paper, label, on, why="needs a deduplication run (defenses: dedup)")
                           for rule, claim, paper in templates[3:]]
                continue
            for dedup in dedups:
                vs = f"{where}: {rmft} vs {dedup}"
                dedup_reduction = series_reduction(ter.get(key(dedup)), ter.get(key(BASELINE)))
                difference = (None if reduction["ter"] is None or dedup_reduction is None
                              else reduction["ter"] - dedup_reduction)
                verdict, why = _direction(difference, "no TER reduction of both defenses")
                claims.append(Claim("rmft_vs_dedup_ter", *templates[3][1:], label, vs, difference, verdict=verdict,
                                    why=why))
                claims.append(_aurc_claim(templates[4], label, vs, curve.get(rmft, {}), curve.get(dedup, {}),
                                          rmft, dedup, taus))
    return claims


def _aurc_claim(template, label: str, on: str, rmft: dict, dedup: dict, rmft_name: str, dedup_name: str,
                taus: Sequence[float]) -> Claim:
    _, claim, paper = template
    ours, theirs = rmft.get("aurc"), dedup.get("aurc")
    if ours is not None and theirs is not None:
        verdict, why = _direction(ours - theirs, "")
        return Claim("rmft_vs_dedup_aurc", claim, paper, label, on, ours - theirs, verdict=verdict, why=why)
    cheapest = ", ".join(f"{name} {curve['min_ppl_increase']:.1f} %" for name, curve
                         in ((rmft_name, rmft), (dedup_name, dedup)) if curve.get("min_ppl_increase") is not None)
    tau_max = max(taus)
    if ours is not None:
        return Claim("rmft_vs_dedup_aurc", claim, paper, label, on, verdict=HOLDS,
                     why=f"{dedup_name} has no checkpoint within τ_max = {tau_max:g} % (smallest PPL increase: "
                         f"{cheapest})")
    if theirs is not None:
        return Claim("rmft_vs_dedup_aurc", claim, paper, label, on, verdict=FAILS,
                     why=f"{rmft_name} has no checkpoint within τ_max = {tau_max:g} % (smallest PPL increase: "
                         f"{cheapest})")
    return Claim("rmft_vs_dedup_aurc", claim, paper, label, on,
                 why=f"neither has a checkpoint within τ_max = {tau_max:g} % (smallest PPL increase: "
                     f"{cheapest or 'unknown'})")


def repetition_claims(metrics: pl.DataFrame) -> list[Claim]:
    claim = "Extraction grows with a PII string's repetition count (Spearman rho)"
    paper, label = "grows", "premise of Joshi & Smith (Kandpal et al.; Lee et al.)"
    names = [m for m in metrics["metric"].unique().to_list() if m.startswith("ter_rep/")]
    rows = at_checkpoint(select_metrics(metrics, names, defense=BASELINE, entity_type="ALL"))
    if rows.height == 0:
        return [Claim("repetition", claim, paper, label, why="needs extraction metrics of a run of the defense "
                      "none")]
    claims = []
    means = rows.group_by("base_model", "tuning", "prompt_set", "metric").agg(pl.col("value").mean())
    for (base_model, tuning, prompt_set), group in sorted(
            means.group_by("base_model", "tuning", "prompt_set"),
            key=lambda g: (g[0][0], tuning_rank(g[0][1]), prompt_set_rank(g[0][2]))):
        points = sorted((bucket_rank(m.split("/", 1)[1]), v) for m, v in group.select("metric", "value").rows()
                        if v is not None and not math.isnan(v))
        on = f"{base_model}, {tuning}, prompts {prompt_set}, {BASELINE}, last checkpoint"
        if len(points) < 2:
            claims.append(Claim("repetition", claim, paper, label, on, why="fewer than 2 repetition buckets hold "
                                "true PII"))
            continue
        rho = spearman([b for b, _ in points], [v for _, v in points])
        verdict, why = _direction(rho, "the extraction rate is the same in every bucket")
        claims.append(Claim("repetition", claim, paper, label, on, rho, verdict=verdict, why=why))
    return claims


# ------------------------------------------------------------------------------------------
# Fine-tuning methods (Hou et al.)


def _loss_auc_runs(metrics: pl.DataFrame, epoch: float | None) -> pl.DataFrame:
    """Per base model and tuning method of the undefended runs, at the table epoch: LOSS AUC (seed mean),
    its CI (one seed), ppl_mean and ppl_base, and `learnt` (PPL below the base model's)."""
    rows = at_checkpoint(select_metrics(original_view(metrics), ["mia_auc/loss", "ppl_mean", "ppl_base"],
                                        defense=BASELINE), epoch=epoch)
    if rows.filter(pl.col("metric") == "mia_auc/loss").height == 0:
        return pl.DataFrame()
    wide = rows.group_by("base_model", "tuning", "metric").agg(
        pl.col("value").mean(), pl.col("ci_low").mean(), pl.col("ci_high").mean(), pl.col("epoch").mean(),
        pl.col("seed").n_unique().alias("seeds"))
    out = []
    for (base_model, tuning), group in wide.group_by("base_model", "tuning"):
        values = {r["metric"]: r for r in group.iter_rows(named=True)}
        auc = values.get("mia_auc/loss")
        if auc is None:
            continue
        ppl, base = (values.get(m, {}).get("value") for m in ("ppl_mean", "ppl_base"))
        out.append({"base_model": base_model, "tuning": tuning, "auc": auc["value"], "epoch": auc["epoch"],
                    "ci": (auc["ci_low"], auc["ci_high"]) if auc["seeds"] == 1 and auc["ci_low"] is not None
                    else None,
                    "ppl": ppl, "ppl_base": base, "learnt": ppl is None or base is None or ppl < base})
    return pl.DataFrame(out) if out else pl.DataFrame()


def _family(tuning: str) -> str | None:
    base = tuning.split("_", 1)[0]
    return "parameter" if base in papers.PARAMETER_BASED else "prompt" if base in papers.PROMPT_BASED else None


def finetuning_claims(metrics: pl.DataFrame, epoch: float | None = None) -> list[Claim]:
    runs = _loss_auc_runs(metrics, epoch)
    gpt2 = papers.table3_figure("gpt2", "full")
    prompt = papers.table3_figure("gpt2", "prompt")
    at = "the last checkpoint" if epoch is None else f"epoch {epoch:g}"
    if runs.height == 0:
        untestable = "needs membership inference on a run of the defense none"
        return [Claim("parameter_vs_prompt", "Parameter-based tuning is more exposed to MIA than prompt-based "
                      "(min - max LOSS AUC)", f"{gpt2.text()} vs {prompt.text()}", gpt2.label, why=untestable),
                Claim("auc_grows", "LOSS AUC of parameter-based tuning grows with epochs (Spearman rho)",
                      "rises towards 1", "GPT-2 to Llama-2-7B; Hou et al., figures", why=untestable),
                Claim("prompt_near_chance", "Prompt-based tuning stays near chance (LOSS AUC)", prompt.text(),
                      prompt.label, why=untestable),
                _lora_targets("-", [], at), _model_size(runs, at)]
    claims = []
    for base_model in sorted(set(runs["base_model"].to_list())):
        model_runs = sorted((r for r in runs.iter_rows(named=True) if r["base_model"] == base_model),
                            key=lambda r: tuning_rank(r["tuning"]))
        claims.append(_parameter_vs_prompt(base_model, model_runs, at, gpt2, prompt))
        claims += _auc_trends(metrics, base_model, model_runs)
        for run in (r for r in model_runs if _family(r["tuning"]) == "prompt"):
            claims.append(_near_chance(base_model, run, at, prompt))
        claims.append(_lora_targets(base_model, model_runs, at))
    claims.append(_model_size(runs, at))
    return claims


def _parameter_vs_prompt(base_model: str, runs: list[dict], at: str, gpt2, prompt) -> Claim:
    claim = "Parameter-based tuning is more exposed to MIA than prompt-based (min - max LOSS AUC)"
    paper = f"{gpt2.text()} vs {prompt.text()}"
    on = f"{base_model}, {BASELINE}, {at}"
    groups = {family: [r for r in runs if _family(r["tuning"]) == family] for family in ("parameter", "prompt")}
    stalled = [r["tuning"] for r in groups["prompt"] if not r["learnt"]]
    learnt = [r for r in groups["prompt"] if r["learnt"]]
    if not groups["parameter"] or not groups["prompt"]:
        return Claim("parameter_vs_prompt", claim, paper, gpt2.label, on,
                     why="needs a parameter-based (full, head, lora) and a prompt-based (prefix, prompt, ptuning) "
                         "tuning method")
    if not learnt:
        return Claim("parameter_vs_prompt", claim, paper, gpt2.label, on,
                     why=f"no prompt-based run beat its base model's perplexity ({', '.join(stalled)})")
    low = min(groups["parameter"], key=lambda r: r["auc"])
    high = max(learnt, key=lambda r: r["auc"])
    verdict, why = _direction(low["auc"] - high["auc"], "")
    note = f"; left out, not learnt: {', '.join(stalled)}" if stalled else ""
    return Claim("parameter_vs_prompt", claim, paper, gpt2.label, f"{on}: {low['tuning']} vs {high['tuning']}{note}",
                 low["auc"] - high["auc"], verdict=verdict, why=why)


def _auc_trends(metrics: pl.DataFrame, base_model: str, runs: list[dict]) -> list[Claim]:
    claim = "LOSS AUC of parameter-based tuning grows with epochs (Spearman rho)"
    claims = []
    for run in (r for r in runs if _family(r["tuning"]) == "parameter"):
        series = by_checkpoint(select_metrics(original_view(metrics), ["mia_auc/loss"], defense=BASELINE,
                                              base_model=base_model, tuning=run["tuning"]), ("tuning",),
                               "mia_auc/loss").get((run["tuning"],), {})
        epochs = dict(select_metrics(metrics, ["mia_auc/loss"], defense=BASELINE, base_model=base_model,
                                     tuning=run["tuning"]).select("checkpoint", "epoch").unique().rows())
        points = sorted((epochs[c], v) for c, v in series.items() if v is not None)
        on = f"{base_model}, {BASELINE}, {run['tuning']}, {len(points)} checkpoints"
        if len(points) < MIN_TREND_POINTS:
            claims.append(Claim("auc_grows", claim, "rises towards 1", "GPT-2 to Llama-2-7B; Hou et al., figures",
                                on, why=f"fewer than {MIN_TREND_POINTS} checkpoints"))
            continue
        rho = spearman([e for e, _ in points], [v for _, v in points])
        verdict, why = _direction(rho, "the AUC is the same at every checkpoint")
        claims.append(Claim("auc_grows", claim, "rises towards 1", "GPT-2 to Llama-2-7B; Hou et al., figures",
                            on, rho, verdict=verdict, why=why))
    return claims


def _near_chance(base_model: str, run: dict, at: str, prompt) -> Claim:
    claim = "Prompt-based tuning stays near chance (LOSS AUC)"
    on = f"{base_model}, {BASELINE}, {run['tuning']}, {at}"
    if not run["learnt"]:
        return Claim("prompt_near_chance", claim, prompt.text(), prompt.label, on, run["auc"], run["ci"],
                     why=f"PPL {run['ppl']:.2f} is no lower than the base model's {run['ppl_base']:.2f}: the run has "
                         f"not learnt the data")
    if run["ci"] is not None:
        near = run["ci"][0] <= 0.5 <= run["ci"][1]
    else:
        near = abs(run["auc"] - 0.5) <= CHANCE_MARGIN
    return Claim("prompt_near_chance", claim, prompt.text(), prompt.label, on, run["auc"], run["ci"],
                 verdict=HOLDS if near else FAILS)


def _lora_targets(base_model: str, runs: list[dict], at: str) -> Claim:
    claim = "LoRA on MLP memorises more than LoRA on attention (LOSS AUC difference)"
    label = "GPT-2, Llama; Hou et al."
    by_name = {r["tuning"]: r for r in runs}
    on = f"{base_model}, {BASELINE}, {at}"
    if "lora_mlp" not in by_name or "lora_attention" not in by_name:
        return Claim("lora_mlp_vs_attention", claim, "MLP ahead", label, on,
                     why="needs LoRA runs on MLP and on attention projections (tuning methods lora_mlp and "
                         "lora_attention)")
    difference = by_name["lora_mlp"]["auc"] - by_name["lora_attention"]["auc"]
    verdict, why = _direction(difference, "")
    return Claim("lora_mlp_vs_attention", claim, "MLP ahead", label, on, difference, verdict=verdict, why=why)


def _model_size(runs: pl.DataFrame, at: str) -> Claim:
    claim = "Full fine-tuning's LOSS AUC grows with model size (Spearman rho)"
    paper = " < ".join(papers.table3_figure(m, "full").text() for m in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"))
    label = "GPT-2 sizes, WikiText-2; Hou et al., Table 3"
    sized = [(papers.model_size_rank(r["base_model"]), r["auc"]) for r in runs.iter_rows(named=True)
             if r["tuning"] == "full" and papers.model_size_rank(r["base_model"]) is not None]
    if len(sized) < 2:
        return Claim("model_size", claim, paper, label, f"{BASELINE}, full, {at}",
                     why="needs full fine-tuning of at least two GPT-2 sizes (base_models: gpt2, gpt2-medium, ...)")
    rho = spearman([s for s, _ in sized], [a for _, a in sized])
    verdict, why = _direction(rho, "the AUC is the same at every size")
    return Claim("model_size", claim, paper, label, f"{len(sized)} GPT-2 sizes, {BASELINE}, full, {at}", rho,
                 verdict=verdict, why=why)


# ------------------------------------------------------------------------------------------


def claims_table(metrics: pl.DataFrame, finetuning_epoch: float | None = None,
                 taus: Sequence[float] = TAU_GRID) -> pl.DataFrame:
    """Every claim of the two papers with our number and its verdict (module docstring); COLUMNS."""
    claims = rmft_claims(metrics, taus) + repetition_claims(metrics) + finetuning_claims(metrics, finetuning_epoch)
    numbers = ("ours", "CI low", "CI high")
    return _frame([c.row() for c in claims], text_columns=[c for c in COLUMNS if c not in numbers])
