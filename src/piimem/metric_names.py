"""The names in metrics.parquet's `metric` column (the contract of docs/outputs.md) that the report reads.

The stages that write these metrics and the tables, claims and figures that read them take the names from
here. A family holds one metric per attack, repetition count or bucket, named `<family>/<member>`
(`per(MIA_AUC, "loss")` is "mia_auc/loss"). What each one measures: docs/outputs.md, "Metrics, tables and
figures".
"""

from __future__ import annotations

# The entity_type of a row over all PII types together, beside the rows of each type.
ALL = "ALL"
# Extraction (piimem.metrics.extraction_rates): percentages, each with its counts k of n.
TER, SER, TEGR, PRECISION, RECALL = "ter", "ser", "tegr", "precision", "recall"
# The counts beside them, each a metric of its own: |L| (strings found), |O|, |S_c|, |L∩O|, |L∩S_c|; and the
# prompts of the prompt set (entity type ALL only).
N_FOUND, N_TRUE, N_SEEN = "n_found", "n_true", "n_seen"
N_EXTRACTED, N_SEEN_EXTRACTED, N_PROMPTS = "n_extracted", "n_seen_extracted", "n_prompts"
# Families per repetition bucket of the true strings (piimem.metrics.REPETITION_BUCKETS): the TER (%) of the
# bucket and how many true strings it holds (`per(REPETITION["ter"], "2-3")` is "ter_rep/2-3").
REPETITION = {"ter": "ter_rep", "n": "n_rep"}
# How an address written is matched against the target address (piimem.metrics.match_rates): whole, local
# part, domain. The train-prefix prompts' rates are email_<level> (e-mail targets only).
MATCH_LEVELS = ("exact", "local", "domain")
EMAIL_MATCH = {level: f"email_{level}" for level in MATCH_LEVELS}
# TER over O_ft, the strings the base model did not see in pre-training (tiny GPT-2 only).
TER_FT = "ter_ft"
# Suffixes of the extraction and targeted metrics: `_ft` over the strings of O_ft (not in the base model's
# pre-training data), `_base` the base model's number on the same targets.
FINE_TUNING_ONLY, BASE = "_ft", "_base"
# The targeted attacks (piimem.extraction; docs/attacks.md, "Targeted attacks"): each one's name is its config
# section (extraction.<name>) and the `attack` of its per-target records.
INFERENCE, RECONSTRUCTION, ASSOCIATION = "inference", "reconstruction", "association"
# Their metrics (piimem.extraction.table), over the attack's targets: rates (%) with k of n, or means.
PII_INFERENCE_ACC, PII_INFERENCE_EXPOSURE = "pii_inference_acc", "pii_inference_exposure"
PII_INFERENCE_RANK, PII_INFERENCE_CANDIDATES = "pii_inference_rank", "pii_inference_candidates"
PII_RECONSTRUCTION_ACC, PII_RECONSTRUCTION_FOUND = "pii_reconstruction_acc", "pii_reconstruction_found"
PII_RECONSTRUCTION_CANDIDATES = "pii_reconstruction_candidates"
# Association: the first address written after the owner's name, matched at each level, per prompt set.
ASSOCIATION_MATCH = {level: f"{ASSOCIATION}_{level}" for level in MATCH_LEVELS}
ASSOCIATION_EXACT = ASSOCIATION_MATCH["exact"]
# The targeted attacks in the report's order: name -> (its headline accuracy metric, its label in the tables
# and figures). piimem.config reads the names, the report the metrics and labels.
TARGETED_ATTACKS = {INFERENCE: (PII_INFERENCE_ACC, "PII inference"),
                    RECONSTRUCTION: (PII_RECONSTRUCTION_ACC, "PII reconstruction"),
                    ASSOCIATION: (ASSOCIATION_EXACT, "association")}
TARGETED_ACCURACY = dict(TARGETED_ATTACKS.values())  # headline accuracy metric -> label
# Utility, per checkpoint: test perplexity (mean over examples, token-weighted), the base model's on the
# same texts, the same on the validation split, and the mean training loss since the previous checkpoint.
PPL, PPL_CORPUS, PPL_BASE = "ppl_mean", "ppl_corpus", "ppl_base"
VALIDATION = "val_"  # the prefix of a utility metric measured on the validation split
VAL_PPL, VAL_PPL_CORPUS, VAL_PPL_BASE = VALIDATION + PPL, VALIDATION + PPL_CORPUS, VALIDATION + PPL_BASE
TRAIN_LOSS = "train_loss"
DP_EPSILON = "dp_epsilon"  # the privacy budget a DP-SGD run has spent by the checkpoint
# The privacy audit (piimem.audit), at a run's last checkpoint: the ε lower bound, the canaries and the
# guesses it rests on, the δ it was computed for, (bound 0) the canaries that would give one above 0, and for
# a DP run the accountant's ε at that δ.
AUDIT = {"epsilon": "audit_epsilon", "canaries": "audit_canaries", "included": "audit_included",
         "guesses": "audit_guesses", "correct": "audit_correct", "delta": "audit_delta",
         "needed": "audit_canaries_needed", "accounted": "audit_accounted_epsilon"}
# Canary families, one member per planted repetition count r (piimem.aggregate.read_canaries): mean rank and
# extrapolated exposure (bits), the rank exposure's mean ceiling, mean training occurrences, the canaries.
CANARY = {"exposure": "canary_exposure", "exposure_extrapolated": "canary_exposure_extrapolated",
          "max_exposure": "canary_max_exposure", "train_occurrences": "canary_train_occurrences", "n": "canary_n"}


def mia_tpr_at(percent: str) -> str:
    """The family of an attack's TPR at a false-positive rate given in percent: "0.1" -> "mia_tpr@0.1%fpr"."""
    return f"mia_tpr@{percent}%fpr"


# Membership-inference families, one member per attack.
MIA_AUC, MIA_TPR_AT_1PCT_FPR = "mia_auc", mia_tpr_at("1")
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
