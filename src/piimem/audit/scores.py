"""The audit of a run (piimem.audit, step 3): each canary's score under the run's model, the bound, and for a
DP run the accountant's ε at the audit's δ."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from piimem.audit import SCORE_SCHEMA
from piimem.audit.bound import audit, audit_rows


def canary_scores(model, base_model, tokenizer, canaries: pl.DataFrame, *, batch_size: int = 32,
                  device: str = "auto", base_nll: list[float] | None = None) -> pl.DataFrame:
    """SCORE_SCHEMA per canary: the total NLL (nats) of the address after the text before it under `model` and
    `base_model` (or `base_nll`, computed once for several checkpoints), and score = base_nll - nll."""
    if base_nll is None:
        base_nll = address_nll(base_model, tokenizer, canaries, batch_size=batch_size, device=device)
    nll = address_nll(model, tokenizer, canaries, batch_size=batch_size, device=device)
    return pl.DataFrame({"canary_id": canaries["canary_id"], "included": canaries["included"], "nll": nll,
                         "base_nll": base_nll}, schema={k: SCORE_SCHEMA[k] for k in SCORE_SCHEMA if k != "score"}
                        ).with_columns(score=pl.col("base_nll") - pl.col("nll"))

def address_nll(model, tokenizer, canaries: pl.DataFrame, *, batch_size: int = 32, device: str = "auto",
                ) -> list[float]:
    """Total NLL (nats) of each canary's address given the message text before it (one window per canary:
    `inference.filled_window_scores`, the scoring of the canary exposures and the targeted attacks)."""
    from piimem.extraction.inference import filled_window_scores
    from piimem.progress import Progress

    out = []
    with Progress(canaries.height, "audit: score canaries", unit="canaries") as progress:
        for text, start, value in canaries.select("text", "start", "value").rows():
            head = text[:start]
            # A space that ends the context goes with the address, as the tokenizer splits the message.
            head, separator = (head[:-1], " ") if head.endswith(" ") else (head, "")
            out.append(filled_window_scores(model, tokenizer, head, [separator + value], "", batch_size=batch_size,
                                            device=device, per_token=False)[0])
            progress.update()
    return out

def accounted_epsilon(manifest: dict, delta: float) -> float | None:
    """A DP run's accounted ε at `delta` over all its steps (its accountant, noise and sampling rate, from the
    manifest's `dp`); None for a run without DP-SGD."""
    import dataclasses

    from piimem.train.dp import DPPlan, epsilon_spent

    if not manifest.get("dp"):
        return None
    plan = dataclasses.replace(DPPlan(**manifest["dp"]), delta=delta)
    return epsilon_spent(plan, int(manifest["steps"]))

@dataclass
class RunAudit:
    """The audit of one run (`tables`, the measurement `piimem.evaluate.evaluate_checkpoints` calls at the
    run's last checkpoint): the canaries' scores, the bound at `audit.delta`, and for a DP run the accountant's
    ε at that δ."""

    base_model: object
    tokenizer: object
    canaries: pl.DataFrame
    manifest: dict
    audit_config: dict
    batch_size: int = 32
    device: str = "auto"

    @classmethod
    def from_files(cls, base_model, tokenizer, canaries, manifest, audit_config: dict, **options) -> RunAudit:
        import json
        from pathlib import Path

        return cls(base_model, tokenizer, pl.read_parquet(canaries), json.loads(Path(manifest).read_text()),
                   audit_config, **options)

    def tables(self, model, checkpoint: dict) -> dict[str, pl.DataFrame]:
        """{"result": checkpoint, epoch, metric, value; "records": SCORE_SCHEMA per canary, stamped}."""
        import logging

        from piimem.metric_names import AUDIT
        from piimem.runs import stamp

        log = logging.getLogger("piimem")
        scores = canary_scores(model, self.base_model, self.tokenizer, self.canaries, batch_size=self.batch_size,
                               device=self.device)
        delta = self.audit_config["delta"]
        result = audit(scores["score"].to_numpy(), scores["included"].to_numpy(), delta=delta,
                       confidence=self.audit_config["confidence"])
        log.info("audit: ε >= %.3g at %.0f %% confidence (δ = %.3g): %d of %d guesses right, %d canaries (%d "
                 "included)", result.epsilon, 100 * result.confidence, result.delta, result.correct, result.guesses,
                 result.canaries, result.included)
        rows = audit_rows(result)
        accounted = accounted_epsilon(self.manifest, delta)
        if accounted is not None:
            rows.append((AUDIT["accounted"], accounted))
            log.info("audit: the accountant's ε at that δ is %.3g (%s)", accounted,
                     "no violation found" if result.epsilon <= accounted else "DP GUARANTEE VIOLATED")
        rows = pl.DataFrame(rows, schema={"metric": pl.Utf8, "value": pl.Float64}, orient="row")
        return {"result": stamp(rows, checkpoint), "records": stamp(scores, checkpoint)}
