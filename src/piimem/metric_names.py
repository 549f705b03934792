"""The names in metrics.parquet's `metric` column (DESIGN.md's output contract) that the report reads.

The stages that write these metrics and the tables, claims and figures that read them take the names from
here. A family holds one metric per attack, repetition count or bucket, named `<family>/<member>`
(`per(MIA_AUC, "loss")` is "mia_auc/loss"). What each one measures: docs/outputs.md, "Metrics, tables and
figures".
"""

from __future__ import annotations

# Extraction (piimem.metrics.extraction_rates): percentages, each with its counts k of n.
TER, SER, TEGR, PRECISION, RECALL = "ter", "ser", "tegr", "precision", "recall"
# TER over O_ft, the strings the base model did not see in pre-training (tiny GPT-2 only).
TER_FT = "ter_ft"
# Suffixes of the extraction and targeted metrics: `_ft` over the strings of O_ft (not in the base model's
# pre-training data), `_base` the base model's number on the same targets.
FINE_TUNING_ONLY, BASE = "_ft", "_base"
# Utility, per checkpoint: test perplexity (mean over examples, token-weighted), the base model's on the
# same texts, the same on the validation split, and the mean training loss since the previous checkpoint.
PPL, PPL_CORPUS, PPL_BASE = "ppl_mean", "ppl_corpus", "ppl_base"
VALIDATION = "val_"  # the prefix of a utility metric measured on the validation split
VAL_PPL, VAL_PPL_CORPUS, VAL_PPL_BASE = VALIDATION + PPL, VALIDATION + PPL_CORPUS, VALIDATION + PPL_BASE
TRAIN_LOSS = "train_loss"
DP_EPSILON = "dp_epsilon"  # the privacy budget a DP-SGD run has spent by the checkpoint
# Membership-inference families, one member per attack.
MIA_AUC, MIA_TPR_AT_1PCT_FPR = "mia_auc", "mia_tpr@1%fpr"
MIA_N_MEMBERS, MIA_N_NONMEMBERS, MIA_N_UNSCORED = "mia_n_members", "mia_n_nonmembers", "mia_n_unscored"
MIA_N_GROUPS = "mia_n_groups"  # the link groups (threads) the members and non-members come in
# The blind baseline (piimem.blind): a classifier of members vs non-members that never sees the model; it is
# reported in the MIA families beside the attacks (per(MIA_AUC, BLIND) is "mia_auc/blind").
BLIND = "blind"


def per(family: str, member: object) -> str:
    """The metric of one member of a family: per(MIA_AUC, "zlib") -> "mia_auc/zlib"."""
    return f"{family}/{member}"


# The headline attack (one of piimem.mia.ATTACKS): the papers' LOSS, which the tables, the claims and the
# paired comparisons report.
HEADLINE_ATTACK = "loss"
LOSS_AUC, LOSS_TPR_AT_1PCT_FPR = per(MIA_AUC, HEADLINE_ATTACK), per(MIA_TPR_AT_1PCT_FPR, HEADLINE_ATTACK)
# Axis labels of the figures.
LABELS = {TER: "TER (%)", SER: "SER (%)", TEGR: "TEGR (%)",
          PPL: "PPL (mean over examples)", PPL_CORPUS: "PPL (token-weighted)",
          TRAIN_LOSS: "training loss (nats/token)",
          PRECISION: "precision, base subtracted (%)", RECALL: "recall, base subtracted (%)"}
