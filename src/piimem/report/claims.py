"""The claims table: which findings of the two papers the configuration's runs support, and how firmly.

Every claim is one entry of `RULES`: what it says, the paper's figure with the model and data it was
measured on (`piimem.report.papers`), the quantity of the comparison table it reads
(`piimem.report.comparisons.QUANTITIES`) and its test. A verdict follows from the quantity's interval:

- `holds`: the interval lies entirely on the paper's side (above 0, within the perplexity budget, within
  the chance band); for a trend, also its exact permutation p-value is at most 1 - level; for a difference
  of paired yes/no outcomes (the targeted attacks' accuracies), also its exact McNemar p-value; for a
  difference of paired graded outcomes (exposures per target or canary), also its Wilcoxon signed-rank p;
- `does not hold`: the interval lies entirely on the other side (a trend: and significant that way);
- `inconclusive`: the interval straddles the bound (the reason gives the interval), the quantity has no
  interval (undefined in more than 1 - level of the resamples), a rate claim's baseline extracted fewer
  than `claims.min_strings` distinct strings (too few to compare rates on), the run said to memorise more
  shows no membership signal (its LOSS AUC interval contains 0.5: `with_signal`), or a DP run's privacy
  gain comes from a run that has not learnt;
- `not testable`: the runs the claim needs are missing or the quantity is undefined (the reason says which),
  or a trend has fewer points than its exact test needs to reach the level (`min_trend_points`).

A claim that reads a membership-inference AUC is inconclusive when the blind baseline of its base model
separates the sample (`blind_shift`). Every undecided claim carries a power line ("would need": how many
items would decide it at the effect observed, `piimem.intervals.items_needed`, or what other than a sample).

The interval is the item interval (strings, messages, or members and non-members, resampled; paired
between runs); with three or more seeds (`ClaimSettings.min_seeds`) it is the hull of the item interval
and the t interval across seeds: the seeds share the items, so the t interval holds training noise only
and the item interval sampling noise only, and a verdict needs both on one side. RMFT claims use the
paper's scope: e-mail addresses when measured and the paper-scope RMFT variants; membership-inference
claims the undefended runs, the LOSS attack on the members' original text, at `report.finetuning_epoch`,
leaving out prompt-based runs whose perplexity is no lower than their base model's. The tuning-method
claims compare methods at matched utility: their row names each method's validation perplexity, and a
verdict that would hold or fail is inconclusive when those differ by more than `claims.max_ppl_ratio`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from piimem.defense import DEFENSE_KINDS
from piimem.intervals import clopper_pearson, items_needed, min_trend_points
from piimem.metric_names import (
    ALL,
    AUDIT,
    INFERENCE,
    PII_INFERENCE_ACC,
    PII_INFERENCE_EXPOSURE,
    PII_RECONSTRUCTION_ACC,
    PPL,
    RECONSTRUCTION,
    TER,
    VAL_PPL,
)
from piimem.report import papers
from piimem.report.comparisons import DIFFERENCE, DROP, REPETITION_TREND, quantity_of
from piimem.report.formats import frame
from piimem.report.select import (
    BASELINE,
    PAPER_ENTITY_TYPE,
    Identity,
    at_checkpoint,
    learnt_runs,
    paper_scope,
    prompt_set_rank,
    select_metrics,
    ser_equals_ter,
    tuning_rank,
    where,
)
from piimem.schema import default

HOLDS, FAILS, INCONCLUSIVE, UNTESTABLE = "holds", "does not hold", "inconclusive", "not testable"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, UNTESTABLE)
COLUMNS = ("claim", "paper", "paper: model, data", "ours", "CI low", "CI high", "interval over", "p", "evidence",
           "measured on", "verdict", "why", "would need")
# The test each kind of paired outcome gets beside its interval (comparisons' p_value).
PAIRED_TESTS = {"paired": "McNemar", "signed_rank": "Wilcoxon signed-rank"}


@dataclass(frozen=True)
class ClaimSettings:
    """The `claims` section of the config, with the report's interval level and table epoch."""

    level: float = default("report.ci.level")
    min_strings: int = default("claims.min_strings")  # fewest distinct strings the baseline must extract
    max_ppl_increase: float = default("claims.max_ppl_increase")  # "a small perplexity cost"
    chance_margin: float = default("claims.chance_margin")  # "near chance": an AUC within 0.5 +- this
    min_seeds: int = default("claims.min_seeds")
    finetuning_epoch: float | None = default("report.finetuning_epoch")
    max_ppl_ratio: float = default("claims.max_ppl_ratio")  # matched utility: validation PPLs within this factor
    audit_confidence: float = default("audit.confidence")  # the confidence of the audit's bounds
    # Who each run is (results/runs.parquet); None: read from the names in the tables (`Identity.of_frames`).
    identity: Identity | None = None

    def runs(self, *frames: pl.DataFrame) -> Identity:
        return self.identity or Identity.of_frames(*frames)


@dataclass(frozen=True)
class Rule:
    """One claim: its text, the paper's figure, the comparison quantity it reads and how it is tested."""

    claim: str
    paper: str
    paper_label: str
    quantity: str  # the comparison table's quantity (piimem.report.comparisons.QUANTITIES)
    compares: str  # what that quantity is, in words
    test: str  # "above" (bound 0), "at_most" (the perplexity budget), "within" (the chance band), "trend",
    # "paired" (above 0 and the McNemar test of paired yes/no outcomes), "signed_rank" (above 0 and the
    # Wilcoxon signed-rank test of paired graded outcomes, e.g. exposures)
    rate_claim: bool = False  # needs claims.min_strings strings extracted by the baseline
    reads_auc: bool = False  # reads a membership-inference AUC: void when the blind baseline separates the sample

    def text(self, settings: ClaimSettings = ClaimSettings()) -> str:
        """The verdict rule in words (docs/statistics.md prints these)."""
        interval = f"the {100 * settings.level:g} % interval of {self.compares}"
        what = {
            "above": f"holds when {interval} lies above 0, does not hold when it lies below 0",
            "at_most": f"holds when {interval} lies at or below {settings.max_ppl_increase:g} %, does not hold "
                       f"when it lies above",
            "within": f"holds when {interval} lies within 0.5 +- {settings.chance_margin:g}, does not hold when "
                      f"it lies outside that band",
            "trend": f"holds when {interval} lies above 0 and its exact permutation p-value is at most "
                     f"{1 - settings.level:.2g}; does not hold when both say the reverse",
            "paired": f"holds when {interval} lies above 0 and the exact McNemar p-value of the targets only one "
                      f"run gets right is at most {1 - settings.level:.2g}; does not hold when both say the "
                      f"reverse",
            "signed_rank": f"holds when {interval} lies above 0 and the Wilcoxon signed-rank p-value of the "
                           f"paired differences is at most {1 - settings.level:.2g}; does not hold when both say "
                           f"the reverse",
            "bound": f"holds (no violation found) when {self.compares.split(' against ')[0]} is at most the "
                     f"accounted ε; does not hold, the DP guarantee violated, when it is above (the audit rejects "
                     f"the accounted ε at its confidence, audit.confidence)",
        }[self.test]
        if self.test == "bound":
            return what
        what += "; inconclusive otherwise"
        if self.rate_claim:
            what += (f", and always while the baseline extracted fewer than {settings.min_strings} distinct strings "
                     f"(claims.min_strings)")
        if self.test == "trend":
            points = min_trend_points(1 - settings.level)
            what += (f"; not testable with fewer than {points} points (the exact test's smallest p-value, 1 / n!, "
                     f"cannot reach {1 - settings.level:.2g})")
        if self.reads_auc:
            what += (f"; inconclusive whenever the blind baseline's AUC interval lies above "
                     f"{0.5 + settings.chance_margin:g} (members and non-members differ without the model)")
        return what


_RMFT = papers.RMFT_TER_REDUCTION.label
_GPT2, _PROMPT = papers.table3_figure("gpt2", "full"), papers.table3_figure("gpt2", "prompt")
# Claims the RMFT paper did not test: it measured TER and SER only; the attacks are Lukas et al.'s (2023).
_EXTENSION = "piimem's extension of the RMFT claim to Lukas et al.'s attacks"
_PREMISE = "premise of Joshi & Smith (Kandpal et al.; Lee et al.)"
_BLIND = "Das, Zhang & Tramèr 2024 (blind baselines): a peer's check, not one of the two studies"
_SIZES = " < ".join(papers.table3_figure(m, "full").text() for m in papers.GPT2_PARAMETERS)
_SIZES_LABEL = "GPT-2 sizes, WikiText-2; Hou et al., Table 3"
# The audit: piimem's extension, after Steinke, Nasr & Jagielski 2023 (one training run).
_AUDIT = ("piimem's extension: an ε lower bound from audit canaries in the same training run (Steinke, Nasr & "
          "Jagielski 2023)")
# The peers' reference defense: not a finding of the two studies piimem reproduces.
_LUKAS = ("GPT-2 on ECHR, Enron and Yelp-Health, sentence-level DP-SGD at ε = 8; Lukas et al. 2023, a peer's finding, "
          "not one of the two studies")
RULES: dict[str, Rule] = {
    "rmft_ter": Rule("RMFT reduces TER vs plain fine-tuning (reduction, %)", f"{papers.RMFT_TER_REDUCTION.value:.2f}",
                     _RMFT, "ter_reduction",
                     "RMFT's TER reduction vs none (mean over checkpoints)", "above", rate_claim=True),
    "rmft_ser": Rule("RMFT reduces SER vs plain fine-tuning (reduction, %)", f"{papers.RMFT_SER_REDUCTION.value:.2f}",
                     _RMFT, "ser_reduction",
                     "RMFT's SER reduction vs none (mean over checkpoints)", "above", rate_claim=True),
    "rmft_ppl": Rule("RMFT costs little perplexity (increase, %)", f"{papers.RMFT_PPL_INCREASE.value:.2f}", _RMFT,
                     "ppl_increase", "RMFT's perplexity increase vs none (mean over checkpoints)", "at_most"),
    "rmft_vs_dedup_ter": Rule("RMFT beats deduplication on TER reduction (difference, points)", "RMFT ahead", _RMFT,
                              "ter_reduction_difference",
                              "RMFT's TER reduction minus deduplication's", "above", rate_claim=True),
    "rmft_vs_dedup_aurc": Rule("RMFT beats deduplication on AURC (difference, points)", "RMFT ahead", _RMFT,
                               "aurc_difference",
                               "RMFT's AURC minus deduplication's", "above", rate_claim=True),
    "repetition": Rule("Extraction grows with a PII string's repetition count (Spearman rho)", "grows",
                       _PREMISE, "repetition_trend",
                       "the Spearman correlation of repetition bucket and TER (baseline, last checkpoint)", "trend",
                       rate_claim=True),
    "parameter_vs_prompt": Rule("Parameter-based tuning is more exposed to MIA than prompt-based (min - max LOSS "
                                "AUC)", f"{_GPT2.text()} vs {_PROMPT.text()}", _GPT2.label, "auc_family_gap",
                                "the lowest parameter-based LOSS AUC minus the highest prompt-based one (prompt-based "
                                "runs that did not beat their base model's perplexity left out)", "above",
                                reads_auc=True),
    "auc_grows": Rule("LOSS AUC of parameter-based tuning grows with epochs (Spearman rho)", "rises towards 1",
                      "GPT-2 to Llama-2-7B; Hou et al., figures", "auc_trend",
                      "the Spearman correlation of epoch and LOSS AUC", "trend", reads_auc=True),
    "prompt_near_chance": Rule("Prompt-based tuning stays near chance (LOSS AUC)", _PROMPT.text(), _PROMPT.label,
                               "loss_auc",
                               "the LOSS AUC", "within", reads_auc=True),
    "lora_mlp_vs_attention": Rule("LoRA on MLP memorises more than LoRA on attention (LOSS AUC difference)",
                                  "MLP ahead", "GPT-2, Llama; Hou et al.", "auc_difference",
                                  "lora_mlp's LOSS AUC minus lora_attention's", "above", reads_auc=True),
    "rmft_inference": Rule("RMFT reduces PII inference accuracy vs plain fine-tuning (drop, points)",
                           "not measured", _EXTENSION, quantity_of(PII_INFERENCE_ACC, DROP),
                           "none's PII inference accuracy minus RMFT's (e-mail targets, last checkpoint scored)",
                           "paired"),
    "rmft_reconstruction": Rule("RMFT reduces PII reconstruction accuracy vs plain fine-tuning (drop, points)",
                                "not measured", _EXTENSION, quantity_of(PII_RECONSTRUCTION_ACC, DROP),
                                "none's PII reconstruction accuracy minus RMFT's (e-mail targets, last checkpoint "
                                "scored)", "paired"),
    "rmft_exposure": Rule("RMFT lowers the exposure of true e-mail addresses vs plain fine-tuning (drop, bits)",
                          "not measured", _EXTENSION, quantity_of(PII_INFERENCE_EXPOSURE, DROP),
                          "none's PII inference exposure minus RMFT's, per target (e-mail targets, last checkpoint "
                          "scored)", "signed_rank"),
    "rmft_vs_dedup_exposure": Rule("RMFT lowers the exposure of true e-mail addresses more than deduplication "
                                   "(difference, bits)", "not measured", _EXTENSION,
                                   quantity_of(PII_INFERENCE_EXPOSURE, DIFFERENCE),
                                   "deduplication's PII inference exposure minus RMFT's, per target (e-mail "
                                   "targets, last checkpoint scored)", "signed_rank"),
    "exposure_repetition": Rule("Exposure of a true string grows with its repetition count (Spearman rho)", "grows",
                                f"{_PREMISE}; graded per string, piimem's extension",
                                quantity_of(PII_INFERENCE_EXPOSURE, REPETITION_TREND),
                                "the Spearman correlation of a target string's training occurrences and its PII "
                                "inference exposure (baseline, last checkpoint scored)", "trend"),
    "canary_repetition": Rule("Canary exposure grows with repetition (Spearman rho)", "grows",
                              "Carlini et al. 2019 (The Secret Sharer); premise of Joshi & Smith",
                              "canary_exposure_trend",
                              "the Spearman correlation of a canary's training occurrences and its extrapolated "
                              "exposure (baseline, last checkpoint)", "trend"),
    "rmft_canary": Rule("RMFT lowers the exposure of repeated canaries vs plain fine-tuning (drop, bits)",
                        "not measured", _EXTENSION, "canary_exposure_drop",
                        "none's extrapolated canary exposure minus RMFT's, per canary of a type RMFT masks with two "
                        "or more training occurrences (last checkpoint)", "signed_rank"),
    "blind": Rule("Members and non-members are indistinguishable without the model (blind baseline AUC)",
                  "a precondition of every MIA number", _BLIND, "blind_auc",
                  "the AUC of a word n-gram classifier that never sees the model (link groups kept in one fold)",
                  "within"),
    "model_size": Rule("Full fine-tuning's LOSS AUC grows with model size (Spearman rho)", _SIZES,
                       _SIZES_LABEL, "size_trend",
                       "the Spearman correlation of model size and full fine-tuning's LOSS AUC (three or more "
                       "sizes)", "trend", reads_auc=True),
    "model_size_pair": Rule("Full fine-tuning's LOSS AUC grows with model size (larger minus smaller)", _SIZES,
                            _SIZES_LABEL, "size_difference",
                            "full fine-tuning's LOSS AUC on the larger of two sizes minus that on the smaller",
                            "above", reads_auc=True),
    "rmft_audit": Rule("RMFT lowers the audited ε of plain fine-tuning (drop of the ε lower bound)", "not measured",
                       _AUDIT, quantity_of(AUDIT["epsilon"], DROP),
                       "none's audited ε lower bound minus RMFT's (same audit canaries, last checkpoint)", "above"),
    "dp_audit": Rule("DP-SGD's audited ε stays at or below its accounted ε (audited lower bound)",
                     "a precondition of every DP number", _AUDIT, AUDIT["epsilon"],
                     "the audited ε lower bound against the accountant's ε at the audit's δ", "bound"),
    "dp_ter": Rule("DP-SGD reduces TER vs plain fine-tuning (reduction, %)", "lower (about 3 % of PII still leaks)",
                   _LUKAS, "ter_reduction", "the DP run's TER reduction vs none (mean over checkpoints)", "above",
                   rate_claim=True),
    "dp_auc": Rule("DP-SGD lowers the membership-inference LOSS AUC vs plain fine-tuning (drop)", "lower", _LUKAS,
                   "auc_drop", "none's LOSS AUC minus the DP run's (same tuning method, the members' original text)",
                   "above", reads_auc=True),
    "dp_ppl": Rule("DP-SGD costs perplexity (increase, %)", "higher", _LUKAS, "ppl_increase",
                   "the DP run's perplexity increase vs none (mean over checkpoints)", "above"),
}


@dataclass
class Claim:
    rule: str
    measured_on: str = ""
    ours: float | None = None
    ci: tuple[float | None, float | None] = (None, None)
    over: str = ""
    p: float | None = None
    evidence: str = ""
    verdict: str = UNTESTABLE
    why: str = ""
    needs: str = ""  # the power line of an undecided claim: what would decide it

    def row(self, settings: ClaimSettings) -> dict:
        rule = RULES[self.rule]
        return {"claim": rule.claim, "paper": rule.paper, "paper: model, data": rule.paper_label,
                "ours": self.ours, "CI low": self.ci[0], "CI high": self.ci[1], "interval over": self.over,
                "p": self.p, "evidence": self.evidence, "measured on": self.measured_on, "verdict": self.verdict,
                "why": self.why or rule.text(settings), "would need": self.needs}


# ------------------------------------------------------------------------------------------
# Verdicts from intervals


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def verdict(test: str, low: float, high: float, settings: ClaimSettings, value: float | None = None,
            p: float | None = None) -> tuple[str, str]:
    """(verdict, why) of one test on an interval [low, high] (module docstring); why is "" when the rule
    text says it all."""
    interval = f"[{low:.3g}, {high:.3g}]"
    if test == "above":
        if low > 0:
            return HOLDS, ""
        if high < 0:
            return FAILS, ""
        return INCONCLUSIVE, f"the interval {interval} contains 0"
    if test == "at_most":
        bound = settings.max_ppl_increase
        if high <= bound:
            return HOLDS, ""
        if low > bound:
            return FAILS, ""
        return INCONCLUSIVE, f"the interval {interval} straddles {bound:g} %"
    if test == "within":
        band = (0.5 - settings.chance_margin, 0.5 + settings.chance_margin)
        if band[0] <= low and high <= band[1]:
            return HOLDS, ""
        if high < band[0] or low > band[1]:
            return FAILS, ""
        return INCONCLUSIVE, f"the interval {interval} is not inside the band [{band[0]:g}, {band[1]:g}] nor " \
                             f"outside it"
    if test in ("trend", *PAIRED_TESTS):
        alpha = 1 - settings.level
        significant = p is not None and p <= alpha + 1e-12
        if low > 0 and significant:
            return HOLDS, ""
        if high < 0 and significant:
            return FAILS, ""
        reasons = []
        if not (low > 0 or high < 0):
            reasons.append(f"the interval {interval} contains 0")
        if not significant:
            name = PAIRED_TESTS.get(test, "permutation")
            reasons.append(f"the {name} p-value {p:.3g} is above {alpha:.2g}" if p is not None
                           else f"no {name} p-value")
        return INCONCLUSIVE, "; ".join(reasons)
    raise ValueError(f"unknown claim test {test!r}")


def judge(rule_key: str, row: dict | None, settings: ClaimSettings, measured_on: str,
          missing: str = "the runs it needs are missing") -> Claim:
    """The claim of `rule_key` on one comparison row (None: not testable, because `missing`)."""
    rule = RULES[rule_key]
    if row is None:
        return Claim(rule_key, measured_on, why=missing)
    value = row.get("value")
    low, high = row.get("ci_low"), row.get("ci_high")
    over = row.get("resampled") or ""
    if (row.get("seeds") or 0) >= settings.min_seeds and _finite(low) and _finite(high):
        # The seeds share the items (strings, messages, members): the t interval across seeds sees training
        # noise only, the item interval sampling noise only, so a verdict needs both on one side.
        seed_low, seed_high = row.get("seed_ci_low"), row.get("seed_ci_high")
        if _finite(seed_low) and _finite(seed_high):
            low, high = min(low, seed_low), max(high, seed_high)
            over = f"{over} and {row['seeds']} seeds (t)"
    evidence = "" if row.get("baseline_strings") is None else f"baseline: {_strings(row['baseline_strings'])}"
    claim = Claim(rule_key, measured_on, value if _finite(value) else None,
                  (low if _finite(low) else None, high if _finite(high) else None), over, row.get("p_value"),
                  evidence)
    alpha = 1 - settings.level
    points = row.get("points")
    if rule.test == "trend" and points is not None and points < min_trend_points(alpha):
        claim.why = (f"{points} points cannot reach p <= {alpha:.2g} (the exact test's smallest p is 1 / {points}! = "
                     f"{1 / math.factorial(points):.3g}; needs >= {min_trend_points(alpha)})")
        claim.needs = f">= {min_trend_points(alpha)} points ({points} now)"
        return claim
    if not _finite(value):
        claim.why = missing
        return claim
    if rule.rate_claim and (row.get("baseline_strings") or 0) < settings.min_strings:
        claim.verdict = INCONCLUSIVE
        claim.why = (f"the baseline extracted {_strings(row.get('baseline_strings') or 0)}, fewer than "
                     f"claims.min_strings = {settings.min_strings}")
        claim.needs = _needs(rule, row, low, high, settings)
        return claim
    if not (_finite(low) and _finite(high)):
        claim.verdict = INCONCLUSIVE
        defined = row.get("defined")
        claim.why = "no interval" + ("" if defined is None else
                                     f": the quantity is undefined in {100 * (1 - defined):.0f} % of the resamples")
        claim.needs = _needs(rule, row, low, high, settings)
        return claim
    claim.verdict, claim.why = verdict(rule.test, low, high, settings, value, row.get("p_value"))
    if claim.verdict == INCONCLUSIVE:
        claim.needs = _needs(rule, row, low, high, settings)
    return claim


# What a comparison's items are called in a power line, by what its interval resamples.
_UNITS = {"strings": "true strings", "messages": "test messages", "targets": "targets", "canaries": "canaries"}


def _unit(row: dict) -> str:
    over = row.get("resampled") or ""
    if over.startswith("strings"):  # strings, or strings+messages (AURC): the strings are the scarce items
        return "true e-mail addresses" if row.get("entity_type") == PAPER_ENTITY_TYPE else "true strings"
    return _UNITS.get(over, "members + non-members" if "members" in over else "items")


def _needs(rule: Rule, row: dict, low, high, settings: ClaimSettings) -> str:
    """The power line of an undecided claim: how many items (strings, targets, members + non-members, ...)
    would decide it at the observed effect (`items_needed`: its interval excludes the bound in 80 % of
    samples), and for a rate claim how many true strings the baseline needs to extract claims.min_strings at
    its rate; "" where no count can say it."""
    n, value = row.get("n"), row.get("value")
    if not n or not _finite(value):
        return ""
    unit, needs = _unit(row), []
    if rule.rate_claim and (row.get("baseline_strings") or 0) < settings.min_strings:
        k = row.get("baseline_strings") or 0
        if k:
            needs.append((settings.min_strings * n / k, f"for the baseline to extract {settings.min_strings} at its "
                                                        f"rate ({k} of {n})"))
        else:  # nothing extracted: the exact interval's upper rate bounds how rare extraction is
            rate = clopper_pearson(0, n, settings.level)[1]
            needs.append((settings.min_strings / rate, f"at least, for the baseline to extract "
                                                       f"{settings.min_strings} at its rate's upper bound "
                                                       f"{100 * rate:.2g} % (0 of {n})"))
    if _finite(low) and _finite(high):
        if rule.test == "within":
            band = (0.5 - settings.chance_margin, 0.5 + settings.chance_margin)
            inside = band[0] <= value <= band[1]
            edges = band if inside else [min(band, key=lambda b: abs(b - value))]
            count = max(items_needed(value, low, high, edge, n, settings.level) for edge in edges)
            target = f"to lie inside 0.5 +- {settings.chance_margin:g}" if inside else "to leave the chance band"
        else:
            bound = settings.max_ppl_increase if rule.test == "at_most" else 0.0
            count = items_needed(value, low, high, bound, n, settings.level)
            target = f"to exclude {bound:g}"
        if count == math.inf:
            needs.append((math.inf, "the effect is exactly at the bound: no sample size decides it"))
        elif _finite(count):
            needs.append((count, f"for its interval {target} at this effect ({value:.3g}), 80 % power"))
    if not needs:
        return ""
    finite = [pair for pair in needs if pair[0] != math.inf]
    if not finite:
        return needs[0][1]
    count, why = max(finite, key=lambda pair: pair[0])  # the larger count is the one that decides
    return f"about {_round(count):,} {unit} ({n:,} now) {why}"


def _round(count: float) -> int:
    """A sample-size estimate to two significant digits: its precision is no better."""
    count = math.ceil(count)
    digits = max(0, len(str(count)) - 2)
    return int(math.ceil(count / 10 ** digits) * 10 ** digits)


def _strings(n: int) -> str:
    return f"{n} distinct string" + ("" if n == 1 else "s")


# ------------------------------------------------------------------------------------------
# The claims of each study


def _rows(comparisons: pl.DataFrame, quantity: str, **equal) -> list[dict]:
    return list(where(comparisons, quantity=quantity, **equal).iter_rows(named=True))


def _one(comparisons: pl.DataFrame, quantity: str, **equal) -> dict | None:
    rows = _rows(comparisons, quantity, **equal)
    return rows[0] if rows else None


def _last_checkpoint(rows: list[dict]) -> dict[tuple, dict]:
    """The row of the last checkpoint scored per (base model, tuning, defense, versus)."""
    last: dict[tuple, dict] = {}
    for r in rows:
        key = (r["base_model"], r["tuning"], r["defense"], r["versus"])
        if key not in last or (r["epoch"] or 0) > (last[key]["epoch"] or 0):
            last[key] = r
    return last


def rmft_claims(metrics: pl.DataFrame, comparisons: pl.DataFrame, settings: ClaimSettings) -> list[Claim]:
    rate_rules = ("rmft_ter", "rmft_ser", "rmft_ppl", "rmft_vs_dedup_ter", "rmft_vs_dedup_aurc")
    ter = _rows(comparisons, TER, defense=BASELINE)
    entity_type = paper_scope(r["entity_type"] for r in ter)
    contexts = sorted({(r["base_model"], r["tuning"], r["prompt_set"]) for r in ter if r["entity_type"] == entity_type},
                      key=lambda c: (c[0], tuning_rank(c[1]), prompt_set_rank(c[2])))
    if not contexts:
        return [Claim(rule, why="needs extraction metrics (extraction.prompt_sets) and a run of the defense none")
                for rule in rate_rules]
    defenses = sorted({r["defense"] for r in _rows(comparisons, TER)})
    identity = settings.runs(metrics, comparisons)
    rmfts = [d for d in defenses if identity.is_paper(d, "rmft")]
    dedups = [d for d in defenses if identity.is_paper(d, "dedup")]
    same = ser_equals_ter(metrics)
    claims, judged_ppl = [], set()
    for base_model, tuning, prompt_set in contexts:
        where = f"{base_model}, {tuning}, prompts {prompt_set}, {entity_type}"
        scope = dict(base_model=base_model, tuning=tuning, prompt_set=prompt_set, entity_type=entity_type)
        if not rmfts:
            claims += [Claim(rule, where, why="needs an RMFT run of the paper's scope (defenses: rmft, rmft.scope: "
                             "email)") for rule in rate_rules]
            continue
        for rmft in rmfts:
            on = f"{where}: {rmft} vs {BASELINE}"
            claims.append(judge("rmft_ter", _one(comparisons, "ter_reduction", defense=rmft, **scope), settings, on,
                                "no TER of both runs"))
            ser = judge("rmft_ser", _one(comparisons, "ser_reduction", defense=rmft, **scope), settings, on,
                        "no SER of both runs")
            if {(base_model, d, tuning, prompt_set, entity_type) for d in (rmft, BASELINE)} <= same:
                ser.why = (ser.why + "; " if ser.why else "") + "SER equals TER here (S_c = O at every checkpoint)"
            claims.append(ser)
            if (base_model, tuning, rmft) not in judged_ppl:  # perplexity does not depend on the prompt set
                judged_ppl.add((base_model, tuning, rmft))
                claims.append(judge("rmft_ppl", _one(comparisons, "ppl_increase", base_model=base_model,
                                                     tuning=tuning, defense=rmft), settings,
                                    f"{base_model}, {tuning}: {rmft} vs {BASELINE}, test messages",
                                    "no perplexity of both runs"))
            if not dedups:
                claims += [Claim(rule, on, why="needs a deduplication run (defenses: dedup)")
                           for rule in rate_rules[3:]]
                continue
            for dedup in dedups:
                vs = f"{where}: {rmft} vs {dedup}"
                claims.append(judge("rmft_vs_dedup_ter", _one(comparisons, "ter_reduction_difference", defense=rmft,
                                                              versus=dedup, **scope), settings, vs,
                                    "no TER reduction of both defenses"))
                claims.append(judge("rmft_vs_dedup_aurc", _one(comparisons, "aurc_difference", defense=rmft,
                                                               versus=dedup, **scope), settings, vs,
                                    _aurc_missing(comparisons, scope, rmft, dedup)))
    return claims


def _aurc_missing(comparisons: pl.DataFrame, scope: dict, rmft: str, dedup: str) -> str:
    """Why an AURC difference is undefined: which defense has no checkpoint within τ_max, how far off."""
    parts = []
    for name in (rmft, dedup):
        area = _one(comparisons, "aurc", defense=name, **scope)
        cheapest = _one(comparisons, "min_ppl_increase", defense=name, **scope)
        if area is None or area["value"] is None:
            cost = cheapest["value"] if cheapest and cheapest["value"] is not None else None
            parts.append(f"{name} has no checkpoint within τ_max" + ("" if cost is None else
                                                                     f" (smallest PPL increase {cost:.1f} %)"))
    return "; ".join(parts) or "no AURC of both defenses"


def _downgrade(claim: Claim, reason: str) -> Claim:
    """`claim`, whose verdict holds or fails, made inconclusive for `reason`, keeping what the interval said."""
    claim.why = f"{reason}; the interval alone says \"{claim.verdict}\""
    claim.verdict = INCONCLUSIVE
    return claim


def _unless_unlearnt(claim: Claim, row: dict, learnt: dict) -> Claim:
    """A privacy gain of a run that has not learnt the data is no evidence: a model that learnt nothing leaks
    nothing. Such a verdict that would hold or fail is inconclusive, saying why and what the interval said."""
    if claim.verdict in (HOLDS, FAILS) and not learnt.get((row["base_model"], row["defense"], row["tuning"]), True):
        claim = _downgrade(claim, f"{row['defense']}-{row['tuning']} has not learnt: its test perplexity is no lower "
                                  f"than its base model's, and a model that learnt nothing leaks nothing")
        claim.needs = (f"not a larger sample: a {row['defense']} run that learns (test perplexity below the base "
                       f"model's)")
    return claim


def dp_claims(metrics: pl.DataFrame, comparisons: pl.DataFrame, settings: ClaimSettings) -> list[Claim]:
    """Each DP-SGD variant vs none (Lukas et al.'s finding): its TER reduction (e-mail addresses where measured),
    its LOSS AUC drop and its perplexity increase, each per base model and tuning method it ran with. The
    privacy gains of a DP run that has not learnt (perplexity no lower than its base model's) are inconclusive."""
    private = {name for name, kind in DEFENSE_KINDS.items() if kind.private_training}
    kind = settings.runs(metrics, comparisons).kind
    rows = {quantity: [r for r in _rows(comparisons, quantity) if kind(r["defense"]) in private]
            for quantity in ("ter_reduction", "auc_drop", "ppl_increase")}
    if not any(rows.values()):
        return []  # no dp defense in this configuration: nothing to say, not "not testable" three times
    learnt = learnt_runs(metrics, settings.finetuning_epoch)
    scope = paper_scope(r["entity_type"] for r in rows["ter_reduction"])
    claims = []
    for row in sorted((r for r in rows["ter_reduction"] if r["entity_type"] == scope),
                      key=lambda r: (r["defense"], r["base_model"], tuning_rank(r["tuning"]),
                                     prompt_set_rank(r["prompt_set"]))):
        claims.append(_unless_unlearnt(judge("dp_ter", row, settings, f"{row['base_model']}, {row['tuning']}, prompts "
                                                                      f"{row['prompt_set']}, {scope}: {row['defense']} "
                                                                      f"vs {BASELINE}", "no TER of both runs"),
                                       row, learnt))
    for rule, quantity, what in (("dp_auc", "auc_drop", "members and non-members"),
                                 ("dp_ppl", "ppl_increase", "test messages")):
        for row in sorted(rows[quantity], key=lambda r: (r["defense"], r["base_model"], tuning_rank(r["tuning"]))):
            claim = judge(rule, row, settings, f"{row['base_model']}, {row['tuning']}: {row['defense']} vs "
                                               f"{BASELINE}, {what}", "no value of both runs")
            if rule == "dp_auc":
                claim = with_signal(_unless_unlearnt(claim, row, learnt), comparisons,
                                    [(row["base_model"], row["tuning"])] if claim.verdict == HOLDS else [])
                claim = unless_blind(claim, blind_shift(comparisons, row["base_model"], settings))
            claims.append(claim)
    return claims


def targeted_claims(comparisons: pl.DataFrame, settings: ClaimSettings) -> list[Claim]:
    """RMFT (paper scope) vs none, and vs deduplication, on the targeted attacks, e-mail targets (the paper's PII
    type) where measured, at the last checkpoint the attacks scored: accuracies (yes/no per target) and the
    graded exposure of each true string; and the baseline's exposure against repetition."""
    claims, identity = [], settings.runs(comparisons)
    for rule, attack, quantity, versus, needs in (
            ("rmft_inference", INFERENCE, quantity_of(PII_INFERENCE_ACC, DROP), "none", "a run of none"),
            ("rmft_reconstruction", RECONSTRUCTION, quantity_of(PII_RECONSTRUCTION_ACC, DROP), "none",
             "a run of none"),
            ("rmft_exposure", INFERENCE, quantity_of(PII_INFERENCE_EXPOSURE, DROP), "none", "a run of none"),
            ("rmft_vs_dedup_exposure", INFERENCE, quantity_of(PII_INFERENCE_EXPOSURE, DIFFERENCE), "dedup",
             "a deduplication run")):
        rows = [r for r in _rows(comparisons, quantity) if identity.is_paper(r["defense"], "rmft")
                and (r["versus"] == BASELINE if versus == "none" else identity.is_paper(r["versus"], "dedup"))]
        scope = paper_scope(r["entity_type"] for r in rows)
        rows = [r for r in rows if r["entity_type"] == scope]
        if not rows:
            claims.append(Claim(rule, why=f"needs the targeted attacks (extraction.{attack}) on {needs} and a "
                                          f"paper-scope RMFT run (extraction.targeted_defenses)"))
            continue
        for (base_model, tuning, defense, other), row in sorted(_last_checkpoint(rows).items()):
            claims.append(judge(rule, row, settings, f"{base_model}, {tuning}, {scope}: {defense} vs {other}, "
                                                     f"checkpoint {row['checkpoint']}, {row['n']} targets"))
    rows = _rows(comparisons, quantity_of(PII_INFERENCE_EXPOSURE, REPETITION_TREND), defense=BASELINE)
    scope = paper_scope(r["entity_type"] for r in rows)
    for row in sorted((r for r in rows if r["entity_type"] == scope),
                      key=lambda r: (r["base_model"], tuning_rank(r["tuning"]))):
        claims.append(judge("exposure_repetition", row, settings,
                            f"{row['base_model']}, {row['tuning']}, {scope}, {BASELINE}, checkpoint "
                            f"{row['checkpoint']}, {row['n']} targets", "every target string occurs equally often"))
    if not rows:
        claims.append(Claim("exposure_repetition", why="needs PII inference on a run of none"))
    return claims


def canary_claims(comparisons: pl.DataFrame, settings: ClaimSettings) -> list[Claim]:
    """Canary exposure against repetition (the baseline), and RMFT's drop on repeated canaries of the types
    it masks, paired per canary, at the last checkpoint."""
    trend = sorted(_rows(comparisons, "canary_exposure_trend", defense=BASELINE),
                   key=lambda r: (r["base_model"], tuning_rank(r["tuning"])))
    # The paper-scope RMFT masks e-mail addresses only: its canaries of other types are no test of it.
    identity = settings.runs(comparisons)
    drops = [r for r in _rows(comparisons, "canary_exposure_drop", versus=BASELINE, entity_type=PAPER_ENTITY_TYPE)
             if identity.is_paper(r["defense"], "rmft")]
    if not trend and not drops:
        return []  # no canaries in this configuration (a real corpus): nothing to say
    claims = [judge("canary_repetition", r, settings, f"{r['base_model']}, {r['tuning']}, {BASELINE}, checkpoint "
                                                      f"{r['checkpoint']}, {r['n']} canaries", "no canary exposure")
              for r in trend]
    claims += [judge("rmft_canary", r, settings, f"{r['base_model']}, {r['tuning']}, {r['entity_type']}: "
                                                 f"{r['defense']} vs {BASELINE}, checkpoint {r['checkpoint']}, "
                                                 f"{r['n']} canaries", "no repeated canary of a type RMFT masks")
               for r in sorted(drops, key=lambda r: (r["base_model"], tuning_rank(r["tuning"]), r["defense"]))]
    if not drops:
        claims.append(Claim("rmft_canary", why="needs e-mail canaries with two or more training occurrences "
                                               "(corpus.synthetic.canaries) and canary exposure on a run of none and "
                                               "a paper-scope RMFT run"))
    return claims


def audit_claims(metrics: pl.DataFrame, comparisons: pl.DataFrame, settings: ClaimSettings) -> list[Claim]:
    """RMFT's (paper scope) audited ε vs none's, with the audit canaries resampled; and every DP run's audited
    lower bound against its accounted ε at the same δ, which a correct DP implementation cannot exceed but
    with probability 1 - audit.confidence. Nothing without an audit (audit.canaries 0)."""
    audited = metrics.filter(pl.col("metric") == AUDIT["epsilon"])
    if audited.height == 0:
        return []
    values = {(r["base_model"], r["defense"], r["tuning"], r["metric"]): r["value"]
              for r in metrics.filter(pl.col("metric").is_in(list(AUDIT.values()))).iter_rows(named=True)}
    claims = []
    identity = settings.runs(metrics, comparisons)
    drops = [r for r in _rows(comparisons, quantity_of(AUDIT["epsilon"], DROP), versus=BASELINE)
             if identity.is_paper(r["defense"], "rmft")]
    for row in sorted(drops, key=lambda r: (r["base_model"], tuning_rank(r["tuning"]))):
        base_model, tuning = row["base_model"], row["tuning"]
        on = (f"{base_model}, {tuning}: {row['defense']} vs {BASELINE}, checkpoint {row['checkpoint']}, "
              f"{row['n']} audit canaries")
        baseline = values.get((base_model, BASELINE, tuning, AUDIT["epsilon"]))
        claim = judge("rmft_audit", row, settings, on)
        if claim.verdict == INCONCLUSIVE and row["value"] == 0:
            claim.needs = ("not more canaries: both runs' bounds are equal. RMFT rewrites only repeated addresses, "
                           "and an audit canary's address occurs once (one message, one privacy unit), so RMFT "
                           "leaves it as it is; what RMFT does to repeated strings the canary exposure claims show")
        if baseline == 0 and values.get((base_model, row["defense"], tuning, AUDIT["epsilon"])) == 0:
            # Both bounds 0: the audit found no leak to remove, in either run.
            claim.verdict = INCONCLUSIVE
            claim.why = "the audit has no power here: both runs' bounds are 0"
            needed = values.get((base_model, BASELINE, tuning, AUDIT["needed"]))
            claim.needs = (f"about {_round(needed):,} audit canaries ({row['n']} now) for {BASELINE}'s bound to exceed "
                           f"0 at the accuracy its guesses reached" if needed is not None and math.isfinite(needed)
                           else f"not more canaries: {BASELINE}'s scores do not tell included from held-out "
                                f"canaries better than chance; a run that memorises more (more epochs, a larger "
                                f"model)")
        claims.append(claim)
    if not drops:
        claims.append(Claim("rmft_audit", why="needs an audit (audit.canaries) of a run of none and a paper-scope RMFT "
                                              "run"))
    for row in audited.sort("base_model", "defense", "tuning").iter_rows(named=True):
        accounted = values.get((row["base_model"], row["defense"], row["tuning"], AUDIT["accounted"]))
        if accounted is None:
            continue  # not a DP run
        bound = row["value"]
        on = (f"{row['base_model']}, {row['tuning']}: {row['defense']}, checkpoint {row['checkpoint']}, accounted "
              f"ε {accounted:.3g} at δ {values[(row['base_model'], row['defense'], row['tuning'], AUDIT['delta'])]:.2g}")
        # The bound is itself a one-sided confidence limit (audit.confidence): no interval around it.
        claim = Claim("dp_audit", on, bound, (None, None), "audit canaries: a one-sided bound")
        if bound <= accounted:
            claim.verdict = HOLDS
            claim.why = (f"no violation found: the audited lower bound {bound:.3g} is at most the accounted ε "
                         f"{accounted:.3g} (an audit can refute a guarantee, never prove one)")
        else:
            claim.verdict = FAILS
            claim.why = (f"DP guarantee violated: the audit rejects ε = {accounted:.3g} (the accounted ε) at "
                         f"{100 * settings.audit_confidence:g} % confidence; the bound is {bound:.3g}")
        claims.append(claim)
    return claims


def blind_claims(comparisons: pl.DataFrame, settings: ClaimSettings) -> list[Claim]:
    """Per base model: does the blind baseline (no model) tell the members from the non-members?"""
    return [judge("blind", r, settings, f"{r['base_model']}, members' original text, {r['n']} texts in "
                                        f"{r['groups']} link groups", "no blind baseline score")
            for r in sorted(_rows(comparisons, "blind_auc"), key=lambda r: r["base_model"])]


def blind_shift(comparisons: pl.DataFrame, base_model: str, settings: ClaimSettings) -> str | None:
    """Why the MIA numbers of `base_model` measure no model, or None: the blind baseline's AUC interval lies
    above 0.5 + claims.chance_margin, so members and non-members differ in their text alone."""
    row = _one(comparisons, "blind_auc", base_model=base_model)
    if row is None or not _finite(row["ci_low"]) or row["ci_low"] <= 0.5 + settings.chance_margin:
        return None
    return (f"members and non-members differ without the model: the blind baseline's AUC {row['value']:.3f} "
            f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}] lies above {0.5 + settings.chance_margin:g}")


def unless_blind(claim: Claim, reason: str | None) -> Claim:
    """A claim that reads an MIA AUC, made inconclusive when the blind baseline separates its sample."""
    if reason is None or claim.verdict == UNTESTABLE:
        return claim
    if claim.verdict in (HOLDS, FAILS):
        claim = _downgrade(claim, reason)
    else:
        claim.why = f"{reason}; {claim.why}" if claim.why else reason
    claim.needs = "members and non-members drawn alike (a sample the blind baseline cannot separate)"
    return claim


def repetition_claims(comparisons: pl.DataFrame, settings: ClaimSettings) -> list[Claim]:
    # All PII types together where measured (more strings per bucket), else the one scope there is.
    rows = _rows(comparisons, "repetition_trend", entity_type=ALL) or _rows(comparisons, "repetition_trend")
    rows.sort(key=lambda r: (r["base_model"], tuning_rank(r["tuning"]), prompt_set_rank(r["prompt_set"])))
    if not rows:
        return [Claim("repetition", why="needs extraction metrics of a run of the defense none")]
    return [judge("repetition", row, settings, f"{row['base_model']}, {row['tuning']}, prompts {row['prompt_set']}, "
                                               f"{row['entity_type']}, {BASELINE}, last checkpoint",
                  "fewer than 2 repetition buckets hold true PII") for row in rows]


def method_utility(metrics: pl.DataFrame, epoch: float | None) -> tuple[str, dict[tuple[str, str], float]]:
    """(label, {(base model, tuning): seed-mean perplexity}) of the undefended runs at the checkpoint nearest
    `epoch`: validation PPL where measured (val_ppl_mean), else test PPL (ppl_mean)."""
    for metric, label in ((VAL_PPL, "val PPL"), (PPL, "test PPL")):
        rows = at_checkpoint(select_metrics(metrics, [metric], defense=BASELINE), epoch=epoch)
        if rows.height:
            means = rows.group_by("base_model", "tuning").agg(pl.col("value").mean())
            return label, {(b, t): v for b, t, v in means.rows() if v is not None}
    return "PPL", {}


def at_matched_utility(claim: Claim, methods: list[str], base_model: str, utility: tuple[str, dict],
                       settings: ClaimSettings) -> Claim:
    """`claim` with the compared methods' perplexities in `measured_on`; a verdict that holds or fails turns
    inconclusive when they differ by more than claims.max_ppl_ratio (the methods have not learnt alike)."""
    label, values = utility
    ppl = {m: values[(base_model, m)] for m in methods if (base_model, m) in values}
    if not ppl:
        return claim
    claim.measured_on += f"; {label}: " + ", ".join(f"{m} {v:.2f}" for m, v in ppl.items())
    low, high = min(ppl, key=ppl.get), max(ppl, key=ppl.get)
    ratio = ppl[high] / ppl[low]
    if claim.verdict in (HOLDS, FAILS) and ratio > settings.max_ppl_ratio:
        claim = _downgrade(claim, f"not at matched utility: {label} {ppl[high]:.2f} ({high}) is {ratio:.2f}x "
                                  f"{ppl[low]:.2f} ({low}), above claims.max_ppl_ratio = {settings.max_ppl_ratio:g}")
        claim.needs = f"not a larger sample: {high} trained to within {settings.max_ppl_ratio:g}x of {low}'s {label}"
    return claim


def with_signal(claim: Claim, comparisons: pl.DataFrame, winners: list[tuple[str, str]]) -> Claim:
    """A verdict that one run memorises more than another needs the run said to memorise more to show a
    membership signal at all: where the LOSS AUC interval of one of `winners` ((base model, tuning) of an
    undefended run) contains 0.5, a difference from another run is noise between two runs at chance, and a
    verdict that holds or fails becomes inconclusive, saying which run and what the interval alone said."""
    if claim.verdict not in (HOLDS, FAILS):
        return claim
    for base_model, tuning in winners:
        row = _one(comparisons, "loss_auc", base_model=base_model, tuning=tuning, defense=BASELINE)
        if row is not None and _finite(row["ci_low"]) and row["ci_low"] <= 0.5:
            claim = _downgrade(claim, f"{base_model} {tuning}'s LOSS AUC {row['value']:.3f} [{row['ci_low']:.3f}, "
                                      f"{row['ci_high']:.3f}] contains 0.5: it shows no membership signal, so the "
                                      f"difference says nothing about memorisation")
            needed = items_needed(row["value"], row["ci_low"], row["ci_high"], 0.5, row["n"] or 0)
            claim.needs = (f"about {_round(needed):,} members + non-members ({row['n']} now) for {tuning}'s LOSS AUC "
                           f"interval to exclude 0.5 at its AUC ({row['value']:.3f}), 80 % power"
                           if _finite(needed) and needed != math.inf else f"{tuning} to show a membership signal")
            return claim
    return claim


def finetuning_claims(metrics: pl.DataFrame, comparisons: pl.DataFrame, settings: ClaimSettings) -> list[Claim]:
    at = "the last checkpoint" if settings.finetuning_epoch is None else f"epoch {settings.finetuning_epoch:g}"
    aucs = _rows(comparisons, "loss_auc", defense=BASELINE)
    if not aucs:
        missing = "needs membership inference on a run of the defense none"
        return [Claim(rule, why=missing) for rule in
                ("parameter_vs_prompt", "auc_grows", "prompt_near_chance", "lora_mlp_vs_attention", "model_size")]
    learnt = learnt_runs(metrics, settings.finetuning_epoch)
    utility = method_utility(metrics, settings.finetuning_epoch)
    claims, family = [], settings.runs(metrics, comparisons).family
    for base_model in sorted({r["base_model"] for r in aucs}):
        first = len(claims)
        runs = sorted((r for r in aucs if r["base_model"] == base_model), key=lambda r: tuning_rank(r["tuning"]))
        on = f"{base_model}, {BASELINE}, {at}"
        families = {f: [r["tuning"] for r in runs if family(r["tuning"]) == f] for f in ("parameter", "prompt")}
        stalled = [t for t in families["prompt"] if not learnt.get((base_model, BASELINE, t), True)]
        gap = _one(comparisons, "auc_family_gap", base_model=base_model)
        if not families["parameter"] or not families["prompt"]:
            missing = ("needs a parameter-based (full, head, lora) and a prompt-based (prefix, prompt, ptuning) "
                       "tuning method")
        else:
            missing = f"no prompt-based run beat its base model's perplexity ({', '.join(stalled)})"
        note = f"; left out, not learnt: {', '.join(stalled)}" if stalled and gap else ""
        compared = families["parameter"] + [t for t in families["prompt"] if t not in stalled]
        measured_on = on + (f": {gap['tuning']} vs {gap['versus']}{note}" if gap else "")
        parameter_vs_prompt = judge("parameter_vs_prompt", gap, settings, measured_on, missing)
        prompt = compared[len(families["parameter"]):]
        winners = families["parameter"] if parameter_vs_prompt.verdict == HOLDS else prompt
        claims.append(at_matched_utility(with_signal(parameter_vs_prompt, comparisons,
                                                     [(base_model, t) for t in winners]),
                                         compared, base_model, utility, settings))
        for row in _rows(comparisons, "auc_trend", base_model=base_model):
            claims.append(judge("auc_grows", row, settings, f"{base_model}, {BASELINE}, {row['tuning']}, all "
                                                            f"checkpoints"))
        for tuning in families["prompt"]:
            row = next(r for r in runs if r["tuning"] == tuning)
            claim = judge("prompt_near_chance", row, settings, f"{base_model}, {BASELINE}, {tuning}, {at}")
            if tuning in stalled:
                claim.verdict, claim.why = UNTESTABLE, (f"{tuning}'s perplexity is no lower than its base model's: "
                                                        f"the run has not learnt the data")
                claim.needs = f"not a larger sample: a {tuning} run that learns"
            claims.append(claim)
        lora = judge("lora_mlp_vs_attention", _one(comparisons, "auc_difference", base_model=base_model,
                                                   tuning="lora_mlp", versus="lora_attention"), settings, on,
                     "needs LoRA runs on MLP and on attention projections (tuning methods lora_mlp and lora_attention)")
        winner = "lora_mlp" if lora.verdict == HOLDS else "lora_attention"
        claims.append(at_matched_utility(with_signal(lora, comparisons, [(base_model, winner)]),
                                         ["lora_mlp", "lora_attention"], base_model, utility, settings))
        shift = blind_shift(comparisons, base_model, settings)
        claims[first:] = [unless_blind(c, shift) for c in claims[first:]]
    pair = _one(comparisons, "size_difference")
    size = pair or _one(comparisons, "size_trend")
    sized = judge("model_size_pair" if pair else "model_size", size, settings,
                  f"{size['versus']}, {BASELINE}, full, {at}" if size else f"{BASELINE}, full, {at}",
                  "needs full fine-tuning of at least two model sizes (base_models: gpt2, gpt2-medium, ..., "
                  "or tiny-gpt2 and tiny-gpt2-<L>x<D>)")
    if pair:  # the larger model (listed last) must memorise at all for "grows" to hold, the smaller for the reverse
        models = pair["versus"].split(",")
        sized = with_signal(sized, comparisons, [(models[-1 if sized.verdict == HOLDS else 0], "full")])
    for base_model in (size["versus"].split(",") if size else []):
        sized = unless_blind(sized, blind_shift(comparisons, base_model, settings))
    claims.append(sized)
    return claims


# ------------------------------------------------------------------------------------------


def all_claims(metrics: pl.DataFrame, comparisons: pl.DataFrame,
               settings: ClaimSettings = ClaimSettings()) -> list[Claim]:
    """Every claim of the two papers (and piimem's extensions), judged on these runs, in the table's order."""
    return (rmft_claims(metrics, comparisons, settings) + targeted_claims(comparisons, settings)
            + repetition_claims(comparisons, settings) + canary_claims(comparisons, settings)
            + blind_claims(comparisons, settings) + finetuning_claims(metrics, comparisons, settings)
            + dp_claims(metrics, comparisons, settings) + audit_claims(metrics, comparisons, settings))


def claims_table(metrics: pl.DataFrame, comparisons: pl.DataFrame,
                 settings: ClaimSettings = ClaimSettings()) -> pl.DataFrame:
    """Every claim of the two papers with our number, its interval and its verdict (module docstring)."""
    numbers = ("ours", "CI low", "CI high", "p")
    return frame([c.row(settings) for c in all_claims(metrics, comparisons, settings)],
                 text_columns=[c for c in COLUMNS if c not in numbers])


def claims_notes(table: pl.DataFrame | None, settings: ClaimSettings) -> list[str]:
    if table is None or table.height == 0:
        return []
    counts = {v: table.filter(pl.col("verdict") == v).height for v in VERDICTS}
    return [f"{100 * settings.level:g} % intervals; verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items()) +
            ". A verdict follows from the interval (docs/statistics.md, \"Claims\"), never from the point estimate "
            "alone."]


def rule_table(settings: ClaimSettings = ClaimSettings()) -> str:
    """The registry as a markdown table (claim, paper's figure, rule), as docs/statistics.md prints it."""
    lines = ["| claim | paper's figure | verdict rule |", "|---|---|---|"]
    lines += [f"| {r.claim} | {r.paper} ({r.paper_label}) | {r.text(settings)} |" for r in RULES.values()]
    return "\n".join(lines) + "\n"
