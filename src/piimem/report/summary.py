"""The answer on one screen: one line per question a researcher asks of a run, read from the claims.

Each question names the claims (`piimem.report.claims.RULES`) that answer it, in order of preference; its line
gives the first such claim judged on this configuration's runs (the paper's scope and prompt set first, as the
claims table orders them): the effect with its interval, the verdict, and why, or, when undecided, what would
decide it (the claim's power line). A question whose claims the configuration does not test (DP-SGD without a
dp run) has no line. `results/summary.md` and the report's landing page show this table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from piimem.report.claims import HOLDS, INCONCLUSIVE, RULES, UNTESTABLE, Claim, ClaimSettings, all_claims


@dataclass(frozen=True)
class Question:
    text: str
    rules: tuple[str, ...]  # the claims that answer it, preferred first


QUESTIONS = (
    Question("Does RMFT lower how much plain fine-tuning extracts?", ("rmft_ter",)),
    Question("Does RMFT lower the exposure of the true training addresses?", ("rmft_exposure",)),
    Question("Does RMFT lower the exposure of repeated canaries?", ("rmft_canary",)),
    Question("What does RMFT cost in perplexity?", ("rmft_ppl",)),
    Question("Does RMFT beat deduplication (exposure)?", ("rmft_vs_dedup_exposure",)),
    Question("Does RMFT beat deduplication (extraction)?", ("rmft_vs_dedup_ter",)),
    Question("Does leakage grow with how often a string repeats?", ("exposure_repetition", "canary_repetition",
                                                                     "repetition")),
    Question("Is parameter-based tuning more exposed to membership inference than prompt-based?",
             ("parameter_vs_prompt",)),
    Question("Do the attacks measure the model, not a shift between members and non-members?", ("blind",)),
    Question("Does DP-SGD lower membership inference?", ("dp_auc",)),
    Question("Does DP-SGD lower extraction?", ("dp_ter",)),
    Question("What does DP-SGD cost in perplexity?", ("dp_ppl",)),
    Question("Does RMFT lower the audited ε (a lower bound from audit canaries)?", ("rmft_audit",)),
    Question("Does DP-SGD keep its promise (audited ε at most the accounted ε)?", ("dp_audit",)),
)
COLUMNS = ("question", "answer", "effect [95 % CI]", "measured on", "why, or what would decide it")


def _number(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.3g}"


def _effect(claim: Claim) -> str:
    """"0.155 [0.0806, 0.229] bits (drop)": the number, its interval and the unit the claim's text gives."""
    if claim.ours is None:
        return "–"
    unit = RULES[claim.rule].claim.rsplit("(", 1)[-1].rstrip(")") if "(" in RULES[claim.rule].claim else ""
    interval = f" [{_number(claim.ci[0])}, {_number(claim.ci[1])}]" if claim.ci[0] is not None else ""
    return f"{_number(claim.ours)}{interval} ({unit})" if unit else f"{_number(claim.ours)}{interval}"


def _reason(claim: Claim, settings: ClaimSettings) -> str:
    if claim.rule == "blind" and claim.ci[0] is not None and claim.ci[0] <= 0.5 + settings.chance_margin:
        # The blind row's own verdict asks for a narrow interval at 0.5; what matters for the other answers is
        # whether it lies above the band, which voids every AUC claim (claims.blind_shift).
        return (f"no shift that voids the AUC claims: the blind baseline's interval does not lie above "
                f"{0.5 + settings.chance_margin:g}. " + _reason_of_verdict(claim, settings))
    return _reason_of_verdict(claim, settings)


def _reason_of_verdict(claim: Claim, settings: ClaimSettings) -> str:
    if claim.verdict == HOLDS:
        if claim.why:  # a verdict not read from an interval (the DP audit's bound against the accounted ε)
            return claim.why
        test = f"; p = {claim.p:.2g}" if claim.p is not None else ""
        return f"its interval lies on the claim's side{test}"
    reason = claim.why or RULES[claim.rule].text(settings)
    if claim.verdict in (INCONCLUSIVE, UNTESTABLE) and claim.needs:
        return f"{reason}. Would need: {claim.needs}"
    return reason


def _chosen(claims: list[Claim], rules: tuple[str, ...]) -> Claim | None:
    """The first claim of the first rule that was judged on runs (a claim of missing runs only if none was)."""
    for rule in rules:
        judged = [c for c in claims if c.rule == rule and c.ours is not None]
        if judged:
            return judged[0]
    return next((c for rule in rules for c in claims if c.rule == rule), None)


def summary_table(metrics: pl.DataFrame, comparisons: pl.DataFrame,
                  settings: ClaimSettings = ClaimSettings()) -> pl.DataFrame:
    """One row per question (COLUMNS) that the configuration's claims answer."""
    claims = all_claims(metrics, comparisons, settings)
    rows = []
    for question in QUESTIONS:
        claim = _chosen(claims, question.rules)
        if claim is None:
            continue
        rows.append({"question": question.text, "answer": claim.verdict, "effect [95 % CI]": _effect(claim),
                     # what was compared; the details (each method's perplexity, ...) stay in the claims table
                     "measured on": claim.measured_on.split(";")[0],
                     "why, or what would decide it": _reason(claim, settings)})
    return pl.DataFrame(rows, schema={c: pl.Utf8 for c in COLUMNS})


def summary_notes(table: pl.DataFrame, claims: pl.DataFrame | None = None) -> list[str]:
    """What the summary is read from and where the rest is."""
    counts = "" if claims is None else (" The claims table holds " + ", ".join(
        f"{claims.filter(pl.col('verdict') == v).height} {v}" for v in (HOLDS, "does not hold", INCONCLUSIVE,
                                                                           UNTESTABLE)) + ".")
    return [f"One line per question, each the first claim of results/tables/claims.md that answers it (the paper's "
            f"PII type and prompt set first).{counts} Verdicts follow from the interval and its test "
            f"(docs/statistics.md, \"Claims\"); the tables and figures hold every number."]


TITLE = "What the runs show"


def run_context(corpus: str, base_models: list[str], runs: int, checkpoints: int, seeds: list[int]) -> str:
    """The line under the summary's title: what was run."""
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds"
    return (f"{corpus} corpus, {', '.join(base_models)}, {runs} runs, {checkpoints} checkpoints each, "
            f"{seed_text}")


def write_summary(metrics: pl.DataFrame, comparisons: pl.DataFrame, folder, settings: ClaimSettings = ClaimSettings(),
                  context: str = "") -> list:
    """`summary.md` and `summary.html` (the report's landing page shows the html) under `folder`; the paths.
    `context`: a line under the title saying what was run (corpus, runs, checkpoints)."""
    from pathlib import Path

    from piimem.report.claims import claims_table
    from piimem.report.formats import to_html, to_markdown

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = summary_table(metrics, comparisons, settings)
    notes = summary_notes(table, claims_table(metrics, comparisons, settings))
    heading = f"# {TITLE}\n\n" + (f"{context}\n\n" if context else "")
    paths = [folder / "summary.md", folder / "summary.html", folder / "summary.rst"]
    paths[0].write_text(heading + to_markdown(table, notes), encoding="utf-8")
    paths[1].write_text(to_html(table, notes, f"{TITLE}{': ' + context if context else ''}", "summary"),
                        encoding="utf-8")
    paths[2].write_text(to_rst_list(table, context), encoding="utf-8")
    return paths


def to_rst_list(table: pl.DataFrame, context: str = "") -> str:
    """The summary as a reStructuredText list, one question a line with its answer and effect, for the
    report's landing page (a narrow column beside the workflow graph, where a wide table would scroll)."""
    def text(value: str) -> str:  # reST reads |x| and *x* as markup
        return value.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("`", "\\`")

    lines = [f"**{TITLE}**" + (f" ({text(context)})" if context else "") + ":", ""]
    for row in table.iter_rows(named=True):
        lines.append(f"- **{row['answer']}**: {text(row['question'])} {text(row['effect [95 % CI]'])}")
    return "\n".join(lines) + "\n"
