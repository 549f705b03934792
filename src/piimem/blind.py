"""Blind baseline for membership inference (Das, Zhang & Tramèr 2024; docs/attacks.md): members told from
non-members by the text alone, with no model at all.

An attack's AUC is evidence of memorisation only if the member and non-member samples differ in nothing
but membership. A word n-gram classifier that separates them anyway shows a shift between the two sets
(topic, time, sender, thread), which a model's loss picks up just as well; the attack's AUC then measures
that shift. The baseline's score is an out-of-fold member probability, oriented like every attack of
`piimem.mia` (larger = member), so its AUC is read with `piimem.metrics.roc_auc`.

Cross-validation folds follow the link groups of the split (`piimem.corpus.splits.link_messages`): the
messages of one thread share quoted text, and a classifier that trained on one of them recognises the
others by that text, not by anything that tells members from non-members. Per-text folds (`per_text`)
are there to show that leak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from piimem.checks import is_int
from piimem.schema import check, default


@dataclass(frozen=True)
class BlindConfig:
    """`mia.blind` (less `enabled`, which only the workflow reads), and the seed of the folds: `mia.seed`."""

    ngram_range: tuple[int, int] = default("mia.blind.ngram_range")  # word n-gram lengths, shortest and longest
    folds: int = default("mia.blind.folds")
    C: float = default("mia.blind.C")  # inverse L2 strength of the logistic regression
    max_features: int | None = default("mia.blind.max_features")  # most frequent n-grams kept; None: all
    seed: int = default("mia.seed")

    def __post_init__(self) -> None:
        # YAML hands over a list; a tuple keeps the config hashable (scikit-learn takes either).
        ngrams = tuple(self.ngram_range) if isinstance(self.ngram_range, (list, tuple)) else self.ngram_range
        object.__setattr__(self, "ngram_range", ngrams)
        check("mia.blind", {"ngram_range": list(ngrams) if isinstance(ngrams, tuple) else ngrams,
                            "folds": self.folds, "C": self.C, "max_features": self.max_features})
        check("mia", {"seed": self.seed})
        if ngrams[0] > ngrams[1]:
            raise ValueError(f"mia.blind.ngram_range: expected [shortest, longest] with shortest <= longest, "
                             f"got {list(ngrams)}")

    @classmethod
    def from_config(cls, section: dict | None, seed: int) -> BlindConfig:
        """From the config's `mia.blind` section (its `enabled` left out) and `mia.seed`."""
        return cls(**{k: v for k, v in (section or {}).items() if k != "enabled"}, seed=seed)


def scored_spans(texts: Sequence[str], tokenizer, max_length: int) -> list[str]:
    """Exactly the part of each text an attack scores: the characters of its first `max_length` tokens as the
    scoring pass encodes them (special tokens included; the workflow's max_length is train.block_size),
    the whole text when it fits. The formula is `piimem.scoring.scored_text`'s, the one Zlib and Lowercase
    read too, so the baseline sees what the attacks see and nothing more."""
    from piimem.scoring import scored_text

    if not is_int(max_length) or max_length < 2:
        raise ValueError(f"scored_spans: max_length must be an integer >= 2 (the scoring pass's rule), "
                         f"got {max_length!r}")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"scored_spans: texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    return scored_text(tokenizer, texts, max_length=max_length)


def _labels(members, n: int) -> np.ndarray:
    values = np.asarray(members)
    if values.ndim != 1 or len(values) != n:
        raise ValueError(f"blind_scores: members must be one label per text: {n} texts, "
                         f"{len(values) if values.ndim == 1 else values.shape} labels")
    if values.dtype != bool:
        if not np.issubdtype(values.dtype, np.integer) or not np.isin(values, (0, 1)).all():
            raise ValueError("blind_scores: members must be booleans (or 0/1), True = member")
        values = values.astype(bool)
    present = {bool(v) for v in values}
    if present != {True, False}:
        missing = "non-members" if True in present else "members"
        raise ValueError(f"blind_scores: the sample has no {missing}; the baseline needs both classes")
    return values


def _folds(labels: np.ndarray, groups, config: BlindConfig, per_text: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs: every text in exactly one test fold; a training fold always holds both classes."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if per_text:
        smallest = int(min(labels.sum(), (~labels).sum()))
        if smallest < 2:
            raise ValueError(f"blind_scores: per-text folds need at least 2 members and 2 non-members, "
                             f"the sample has {int(labels.sum())} and {int((~labels).sum())}")
        splitter = StratifiedKFold(n_splits=min(config.folds, smallest), shuffle=True, random_state=config.seed)
        return list(splitter.split(np.zeros(len(labels)), labels))
    if groups is None:
        raise ValueError("blind_scores: groups are needed (the link group of each text), or per_text=True")
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) != len(labels):
        raise ValueError(f"blind_scores: groups must be one group per text: {len(labels)} texts, "
                         f"{len(groups) if groups.ndim == 1 else groups.shape} groups")
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"blind_scores: group folds need at least 2 distinct groups, got {n_groups}")
    # Stratified, not plain GroupKFold: folds whose member shares differ bias the out-of-fold AUC below 0.5
    # (a held-out fold rich in members was fitted on a training fold poor in them). Measured on 160 texts in
    # 40 one-class groups of unseen group words, 20 seeds: mean AUC 0.42 with GroupKFold, 0.49 stratified.
    splitter = StratifiedGroupKFold(n_splits=min(config.folds, n_groups), shuffle=True, random_state=config.seed)
    folds = list(splitter.split(np.zeros(len(labels)), labels, groups))
    for k, (train, _) in enumerate(folds):
        if len(set(labels[train].tolist())) < 2:
            raise ValueError(f"blind_scores: training fold {k} of {len(folds)} holds only "
                             f"{'members' if labels[train][0] else 'non-members'} (too few groups of the "
                             f"other class: {n_groups} groups in all); use fewer folds")
    return folds


def blind_scores(texts: Sequence[str], members, groups, config: BlindConfig, *, per_text: bool = False) -> np.ndarray:
    """Out-of-fold member probability of each text (larger = member), from its words alone.

    A scikit-learn Pipeline of a lower-cased word n-gram TF-IDF vectoriser and a logistic regression
    (`config`: n-gram range, C, max_features) is fitted on all folds but one and predicts the held-out
    fold (`cross_val_predict`, predict_proba), so the vocabulary and weights never see the text they score.
    Folds: `min(config.folds, distinct groups)` over `groups` (StratifiedGroupKFold, groups shuffled with
    config.seed): the texts of a group are all in one fold, and each fold's share of members is as close to
    the sample's as whole groups allow. With `per_text`, `groups` is ignored and the
    folds split texts (StratifiedKFold, shuffled with config.seed). Deterministic for a given seed.
    ValueError: lengths that differ, a class missing, fewer than 2 groups, a training fold of one class.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import Pipeline

    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"blind_scores: texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    labels = _labels(members, len(texts))
    folds = _folds(labels, groups, config, per_text)
    pipeline = Pipeline([
        ("ngrams", TfidfVectorizer(lowercase=True, analyzer="word", ngram_range=config.ngram_range,
                                   max_features=config.max_features)),
        # Balanced class weights: a training fold's share of members must not become the intercept, which
        # would score the held-out fold (whose share is the complement) against its own labels. lbfgs is
        # deterministic; max_iter well above the default so that sparse TF-IDF fits converge.
        ("classifier", LogisticRegression(C=config.C, class_weight="balanced", max_iter=1000,
                                          random_state=config.seed)),
    ])
    probabilities = cross_val_predict(pipeline, texts, labels, cv=folds, method="predict_proba")
    return probabilities[:, 1]  # classes_ are sorted: [False, True]
