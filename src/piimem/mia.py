"""Membership inference: member / non-member samples, attack scores from one statistics pass, evaluation.

Definitions: docs/attacks.md (after Hou et al. 2025 and the papers named below). Every score is oriented so that
a LARGER score means "more likely a member" (training example); L(x, M) is the mean token NLL of x under
model M (`nll_mean` of `piimem.scoring.example_statistics`).

  loss       -L(x, M_target)
  ref        -(L(x, M_target) - L(x, M_ref)), M_ref the model before fine-tuning; the score table names
             the reference in its `reference` column
  zlib       -L(x, M_target) / zlib_bytes(x)
  min_k_<K>  mean log-probability of the K % least likely tokens (Shi et al. 2024), already larger=member
  min_k_pp_<K>  Min-K%++ (Zhang et al. 2024): mean of the K % lowest (log p(x_t) - mu_t) / sigma_t
  lowercase  L(lower(x), M_target) / L(x, M_target): the ratio of log-perplexities of the lower-cased
             and the original text, as in Carlini et al. 2021's code (their text says "ratio of
             perplexities"; their code divides the logs). A member's own casing is what the model
             learned, so lower-casing hurts it more: larger = member. For positive NLLs this ranks texts
             exactly as -(L(x) / L(lower(x))) does (x -> -1/x is increasing), so the AUC is the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from piimem.checks import is_int, is_number
from piimem.intervals import LEVEL, percentile_interval
from piimem.metric_names import BLIND
from piimem.metrics import bootstrap_roc, roc_auc, tpr_at_fpr
from piimem.scoring import fraction_label

log = logging.getLogger("piimem")


@dataclass(frozen=True)
class Attack:
    """A membership-inference attack: its config name, its display label, the `example_statistics` columns
    it reads and its score (larger = member) from those columns' expressions, in order.

    A per-K attack (Min-K%) has "{k}" in its label and columns and yields one score per K, named
    `<name>_<K>` ("min_k_20"). A column named "reference:<column>" is read from the reference model's
    statistics of the same texts."""

    name: str
    label: str
    columns: tuple[str, ...]
    score: Callable[..., pl.Expr]
    hint: str = ""  # how to get its columns when they are missing

    @property
    def per_k(self) -> bool:
        return "{k}" in self.label

    @property
    def needs_reference(self) -> bool:
        return any(c.startswith(REFERENCE_PREFIX) for c in self.columns)

    def scored_name(self, k: str | None = None) -> str:
        """The name of its score: `name`, or `name_<k>` for a per-K attack ("min_k_20")."""
        return f"{self.name}_{k}" if self.per_k else self.name

    def scored_label(self, k: str | None = None) -> str:
        return self.label.format(k=k) if self.per_k else self.label


REFERENCE_PREFIX = "reference:"
_MIN_K_HINT = " (add this K to example_statistics' min_k_fractions)"
# Every attack, in display order; the formulas are the module docstring's.
ATTACK_REGISTRY = {a.name: a for a in (
    Attack("loss", "LOSS", ("nll_mean",), lambda nll: -nll),
    Attack("ref", "Ref", ("nll_mean", f"{REFERENCE_PREFIX}nll_mean"), lambda nll, ref_nll: -(nll - ref_nll)),
    Attack("zlib", "Zlib", ("nll_mean", "zlib_bytes"), lambda nll, zlib: -nll / zlib.cast(pl.Float64)),
    Attack("min_k", "Min-{k}%", ("min_k_{k}",), lambda score: score, _MIN_K_HINT),
    Attack("min_k_pp", "Min-{k}%++", ("min_k_pp_{k}",), lambda score: score, _MIN_K_HINT),
    Attack("lowercase", "Lowercase", ("nll_lower_mean", "nll_mean"), lambda lower, nll: lower / nll,
           " (run example_statistics with lowercase=True)"),
)}
ATTACKS = tuple(ATTACK_REGISTRY)


def statistics_options(attacks: Sequence[str], k: float) -> dict:
    """The `example_statistics` options that give the columns `attacks` read (min_k_fractions, lowercase)."""
    columns = {c for a in attacks for c in ATTACK_REGISTRY[a].columns}
    return {"min_k_fractions": (k,), "lowercase": "nll_lower_mean" in columns}


def attack_of(scored_name: str) -> tuple[Attack, str | None] | None:
    """The attack and K of a score's name ("min_k_pp_20" -> (Min-K%++, "20")); None for an unknown name."""
    if scored_name in ATTACK_REGISTRY and not ATTACK_REGISTRY[scored_name].per_k:
        return ATTACK_REGISTRY[scored_name], None
    per_k = [a for a in ATTACK_REGISTRY.values() if a.per_k and scored_name.startswith(f"{a.name}_")]
    if not per_k:
        return None
    attack = max(per_k, key=lambda a: len(a.name))  # min_k_pp_20 is Min-K%++, not Min-K% of "pp_20"
    return attack, scored_name.removeprefix(f"{attack.name}_")


# The blind baseline's display name: it is reported beside the attacks but reads no model (piimem.blind).
BLIND_LABEL = "Blind (no model)"


def attack_label(scored_name: str) -> str:
    """Display name of a score: LOSS, Ref, Zlib, Min-20%, Min-20%++, Lowercase, Blind (no model) (an unknown
    name as is)."""
    if scored_name == BLIND:
        return BLIND_LABEL
    found = attack_of(scored_name)
    return scored_name if found is None else found[0].scored_label(found[1])


# ------------------------------------------------------------------------------------------
# Members and non-members


def _allocate(available: np.ndarray, n: int) -> np.ndarray:
    """Split n over bins in proportion to `available`, never above it (largest remainder, ties: lower bin)."""
    total = int(available.sum())
    if n >= total:
        return available.copy()
    exact = available * (n / total)
    take = np.floor(exact).astype(np.int64)
    remainder = exact - take
    for b in sorted(range(len(available)), key=lambda b: (-remainder[b], b))[: n - int(take.sum())]:
        take[b] += 1
    return take


def _check_split_table(df: pl.DataFrame, name: str) -> None:
    missing = [c for c in ("doc_id", "text") if c not in df.columns]
    if missing:
        raise ValueError(f"sample_members: {name} table lacks column(s) {missing}; expected doc_id, text")
    if df["doc_id"].null_count() or df["doc_id"].n_unique() != df.height:
        raise ValueError(f"sample_members: {name} table has null or repeated doc_id values")
    if df["text"].null_count():
        raise ValueError(f"sample_members: {name} table has {df['text'].null_count()} null text(s)")
    for column in ("body_hash", "group"):
        if column in df.columns and df[column].null_count():
            raise ValueError(f"sample_members: {name} table has {df[column].null_count()} null {column}(s)")


def split_candidates(messages: pl.DataFrame, splits: pl.DataFrame, split: str) -> pl.DataFrame:
    """(doc_id, text, body_hash, group) of the messages of `split`: what `sample_members` draws from. `group`
    is the split's link group (splits.parquet's `group`: a thread, a forward and what it forwards), or the
    message's own doc_id where the splits table has none."""
    table = messages.select("doc_id", "text", *(["body_hash"] if "body_hash" in messages.columns else []))
    chosen = splits.filter(pl.col("split") == split)
    group = pl.col("group").cast(pl.Int64) if "group" in splits.columns else pl.col("doc_id")
    return table.join(chosen.select("doc_id", group.alias("group")), on="doc_id", how="inner").sort("doc_id")


def distinct_texts(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(one message per body: the lowest doc_id of each body_hash, or of each text without body_hash, with
    `copies`, how many messages of the table hold that body; the rows left out)."""
    key = "body_hash" if "body_hash" in df.columns else "text"
    counted = df.sort("doc_id").with_columns(copies=pl.len().over(key).cast(pl.Int64))
    first = counted.unique(subset=[key], keep="first", maintain_order=True)
    return first, counted.join(first.select("doc_id"), on="doc_id", how="anti")


def sample_members(
    train: pl.DataFrame,
    test: pl.DataFrame,
    *,
    n: int | None,
    seed: int,
    length_bins: int = 10,
    tokenizer=None,
) -> pl.DataFrame:
    """Equal numbers of members (from `train`) and non-members (from `test`) with matched lengths, each a
    distinct text.

    `train` and `test`: (doc_id, text) and optionally body_hash and group (`split_candidates`). Each body
    enters once (folder copies and broadcasts share a body: the lowest doc_id stands for it), and a member
    whose body the training split holds more than once is left out: the model trained on it several times,
    which makes it easier to detect than a member seen once (so the sample measures the membership of a text
    seen once, and the log counts what was left out). `group` (default: doc_id) is carried into the result:
    the bootstrap draws whole groups and the blind baseline keeps a group in one fold.

    `n` is the number per class (None: as many as the length matching allows); it is capped by what is
    available, with a warning in the log naming the split that limits it. Length = tokens as the scoring
    pass encodes the text (`tokenizer(text)`, special tokens included) when a tokenizer is given, else
    characters. Texts with nothing to score are left out (fewer than 2 tokens; with character length, the
    empty text).

    Matching: quantile edges of the pooled lengths of both splits cut them into `length_bins` bins (fewer
    when lengths tie at the edges); in each bin the same number of members and non-members is drawn,
    uniformly without replacement, so the two samples have identical bin histograms. With n below the
    total, bins get shares proportional to min(train, test) in the bin (largest remainder). Seeded: the
    result depends only on the tables' contents (rows are ordered by doc_id first), `n`, `seed` and
    `length_bins`.

    Returns (doc_id, text, member, length, length_bin, group): members first, each class sorted by doc_id.
    A doc_id in both tables is an error (a document can't be both a member and a non-member).
    """
    _check_split_table(train, "train")
    _check_split_table(test, "test")
    if not is_int(length_bins) or length_bins < 1:
        raise ValueError(f"sample_members: length_bins must be a positive integer, got {length_bins!r}")
    if n is not None and (not is_int(n) or n < 0):
        raise ValueError(f"sample_members: n must be a non-negative integer or None, got {n!r}")
    both = set(train["doc_id"].to_list()) & set(test["doc_id"].to_list())
    if both:
        raise ValueError(f"sample_members: {len(both)} doc_id(s) are in both train and test "
                         f"(e.g. {min(both)}); members and non-members must be disjoint")

    def with_length(df: pl.DataFrame) -> pl.DataFrame:
        group = pl.col("group") if "group" in df.columns else pl.col("doc_id")
        df = df.select("doc_id", "text", group.cast(pl.Int64).alias("group"), "copies").sort("doc_id")
        texts = df["text"].to_list()
        if tokenizer is not None:
            # A thousand texts at a time: the token lists of a whole corpus, as Python ints, are 10 times its size.
            lengths = [len(ids) for start in range(0, len(texts), 1_000)
                       for ids in tokenizer(texts[start:start + 1_000], add_special_tokens=True,
                                            verbose=False)["input_ids"]]
            shortest = 2
        else:
            lengths = [len(t) for t in texts]
            shortest = 1
        return df.with_columns(pl.Series("length", lengths, dtype=pl.Int64)).filter(pl.col("length") >= shortest)

    (train_bodies, train_copies), (test_bodies, test_copies) = distinct_texts(train), distinct_texts(test)
    repeated = train_bodies.filter(pl.col("copies") > 1)
    log.info("sample_members: %d train and %d test messages are copies of another's body (one per body kept); "
             "%d training bodies occur more than once in training (%d messages) and are left out as members",
             train_copies.height, test_copies.height, repeated.height, int(repeated["copies"].sum() or 0))
    members = with_length(train_bodies.filter(pl.col("copies") == 1))
    others = with_length(test_bodies)
    dropped = train_bodies.height - repeated.height - members.height + test_bodies.height - others.height
    if dropped:
        log.info("sample_members: left out %d text(s) with nothing to score", dropped)
    unit = "tokens" if tokenizer is not None else "characters"

    pooled = np.concatenate([members["length"].to_numpy(), others["length"].to_numpy()]).astype(np.float64)
    if len(pooled):
        edges = np.unique(np.quantile(pooled, np.linspace(0, 1, length_bins + 1)[1:-1])) if length_bins > 1 \
            else np.array([])
    else:
        edges = np.array([])

    def bins_of(df: pl.DataFrame) -> np.ndarray:
        return np.searchsorted(edges, df["length"].to_numpy(), side="right")

    member_bins, other_bins = bins_of(members), bins_of(others)
    n_bins = len(edges) + 1
    available = np.minimum(np.bincount(member_bins, minlength=n_bins), np.bincount(other_bins, minlength=n_bins))
    total = int(available.sum())
    wanted = total if n is None else n
    if n is not None and n > total:
        limit = "test" if others.height <= members.height else "train"
        log.warning("sample_members: asked for %d members and %d non-members but only %d length-matched pairs "
                    "exist (train %d, test %d distinct texts, %d %s-length bins; the %s split limits it); using %d",
                    n, n, total, members.height, others.height, n_bins, unit, limit, total)
    take = _allocate(available, min(wanted, total))

    rng = np.random.default_rng(seed)
    chosen: dict[bool, list[int]] = {True: [], False: []}
    chosen_bins: dict[bool, list[int]] = {True: [], False: []}
    for b in range(n_bins):
        if not take[b]:
            continue
        for is_member, bins in ((True, member_bins), (False, other_bins)):
            rows = np.flatnonzero(bins == b)
            picked = np.sort(rng.choice(rows, size=int(take[b]), replace=False))
            chosen[is_member].extend(picked.tolist())
            chosen_bins[is_member].extend([b] * len(picked))

    parts = []
    for is_member, df in ((True, members), (False, others)):
        part = df[chosen[is_member]].with_columns(
            pl.lit(is_member).alias("member"),
            pl.Series("length_bin", chosen_bins[is_member], dtype=pl.Int64),
        )
        parts.append(part.sort("doc_id"))
    result = pl.concat(parts).select("doc_id", "text", "member", "length", "length_bin", "group")
    log.info("sample_members: %d members + %d non-members in %d %s-length bins and %d link groups (seed %d)",
             len(chosen[True]), len(chosen[False]), n_bins, unit, result["group"].n_unique(), seed)
    return result


def sample_statistics(model, tokenizer, sample: pl.DataFrame, **options) -> pl.DataFrame:
    """`piimem.scoring.example_statistics` of the texts of `sample` (index, text), indexed by the sample's
    own `index`; rows whose text is null (left out of a view) are not scored. `options` as for
    example_statistics (max_length, batch_size, device, min_k_fractions, lowercase)."""
    from piimem.scoring import example_statistics

    scored = sample.filter(pl.col("text").is_not_null())
    stats = example_statistics(model, tokenizer, scored["text"].to_list(), **options)
    return stats.with_columns(pl.Series("index", scored["index"].to_list(), dtype=pl.Int64))


# ------------------------------------------------------------------------------------------
# Attack scores


def _fractions(k) -> list[float]:
    fractions = [k] if isinstance(k, (int, float)) and not isinstance(k, bool) else list(k)
    for f in fractions:
        if not is_number(f) or not 0 < f <= 1:
            raise ValueError(f"attack_scores: k must be a fraction in (0, 1] (0.2 = 20 %), got {f!r}")
    return fractions


def _need(stats: pl.DataFrame, column: str, name: str, attack: Attack) -> None:
    if column not in stats.columns:
        raise ValueError(f"attack_scores: attack {attack.name!r} needs column {column!r}, which the {name} "
                         f"statistics lack{attack.hint}; they have {stats.columns}")


def _join_reference(stats: pl.DataFrame, reference_stats: pl.DataFrame | None, reference: str | None,
                    attacks: Sequence[Attack]) -> pl.DataFrame:
    """`stats` with the reference model's columns the `attacks` read, as _ref_<column>."""
    names = [a.name for a in attacks]
    if reference_stats is None:
        raise ValueError(f"attack_scores: attack {', '.join(names)} needs reference_stats (the reference model's "
                         "example_statistics)")
    if not reference:
        raise ValueError(f"attack_scores: attack {', '.join(names)} needs `reference`, the name of the reference "
                         "model, so that the result records which one was used")
    ref_index = reference_stats["index"] if "index" in reference_stats.columns else None
    if ref_index is None or sorted(ref_index.to_list()) != stats["index"].to_list():
        raise ValueError("attack_scores: reference statistics must cover exactly the target's indexes "
                         "(the same texts scored by the reference model)")
    columns = {}
    for attack in attacks:
        for column in (c.removeprefix(REFERENCE_PREFIX) for c in attack.columns if c.startswith(REFERENCE_PREFIX)):
            _need(reference_stats, column, "reference", attack)
            columns[column] = pl.col(column).alias(f"_ref_{column}")
    return stats.join(reference_stats.select("index", *columns.values()), on="index", how="left")


def attack_scores(
    target_stats: pl.DataFrame,
    reference_stats: pl.DataFrame | None,
    attacks: Sequence[str] = ATTACKS,
    k: float | Sequence[float] = 0.2,
    *,
    reference: str | None = None,
) -> pl.DataFrame:
    """Scores (index, attack, score, reference) of each example under each attack, larger = member.

    `target_stats` / `reference_stats`: `example_statistics` tables of the same texts under the target
    model and the reference model (only needed for "ref"). `attacks`: names from ATTACKS (formulas in the
    module docstring). `k`: one K fraction or several; "min_k" and "min_k_pp" give one attack per K,
    named e.g. "min_k_20". `reference` names the reference model (a path or id) and is required with
    "ref"; the column `reference` holds it on the ref rows and is null elsewhere. Examples without a
    scored token get a null score (drop them before evaluating). Rows ordered by attack, then index.
    """
    attacks = list(attacks)
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        raise ValueError(f"attack_scores: unknown or no attacks {unknown or attacks}; expected some of {ATTACKS}")
    fractions = _fractions(k)
    if "index" not in target_stats.columns or target_stats["index"].n_unique() != target_stats.height:
        raise ValueError("attack_scores: target statistics need a unique `index` column (example_statistics)")
    stats = target_stats.sort("index")

    with_reference = [ATTACK_REGISTRY[a] for a in attacks if ATTACK_REGISTRY[a].needs_reference]
    if with_reference:
        stats = _join_reference(stats, reference_stats, reference, with_reference)

    def column(name: str, attack: Attack) -> pl.Expr:
        if name.startswith(REFERENCE_PREFIX):
            return pl.col(f"_ref_{name.removeprefix(REFERENCE_PREFIX)}")
        _need(stats, name, "target", attack)
        return pl.col(name)

    expressions: list[tuple[str, pl.Expr, str | None]] = []
    for attack in map(ATTACK_REGISTRY.get, attacks):
        for k_label in map(fraction_label, fractions) if attack.per_k else [None]:
            inputs = [column(c.format(k=k_label), attack) for c in attack.columns]
            expressions.append((attack.scored_name(k_label), attack.score(*inputs),
                                reference if attack.needs_reference else None))

    frames = [
        stats.select(
            "index",
            pl.lit(name, dtype=pl.Utf8).alias("attack"),
            expr.cast(pl.Float64).alias("score"),
            pl.lit(ref, dtype=pl.Utf8).alias("reference"),
        )
        for name, expr, ref in expressions
    ]
    return pl.concat(frames)


def blind_baseline(sample: pl.DataFrame, tokenizer, max_length: int, config) -> pl.DataFrame:
    """The blind baseline's scores (index, attack "blind", score, reference null), shaped like `attack_scores`
    so that `evaluate_attacks` reports it beside the attacks: `piimem.blind.blind_scores` of each text cut
    to the span the attacks score (its first `max_length` tokens), cross-validated over the sample's link
    groups. `sample`: (index, member, text[, group]); rows whose text is null (left out of a view) get none.
    `config`: a `piimem.blind.BlindConfig`."""
    from piimem.blind import blind_scores, scored_spans

    scored = sample.filter(pl.col("text").is_not_null())
    groups = scored["group"] if "group" in scored.columns else scored["index"]
    scores = blind_scores(scored_spans(scored["text"].to_list(), tokenizer, max_length), scored["member"],
                          groups.to_numpy(), config)
    return pl.DataFrame({"index": scored["index"], "attack": BLIND, "score": scores, "reference": None},
                        schema={"index": pl.Int64, "attack": pl.Utf8, "score": pl.Float64, "reference": pl.Utf8})


# ------------------------------------------------------------------------------------------
# Evaluation


def _fpr_label(fpr: float) -> str:
    return f"tpr_at_{fraction_label(fpr)}pct_fpr"  # 0.01 -> tpr_at_1pct_fpr, 0.001 -> tpr_at_0_1pct_fpr


def evaluate_attacks(
    scores: pl.DataFrame,
    labels: pl.DataFrame,
    *,
    fprs: Sequence[float] = (0.01, 0.001),
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
) -> pl.DataFrame:
    """One row per attack: attack, reference, n_members, n_nonmembers, n_groups, n_unscored, auc, auc_low,
    auc_high (percentile bootstrap at `level`), and tpr_at_<pct>pct_fpr per FPR in `fprs` (`tpr_at_fpr`) with
    its interval tpr_at_<pct>pct_fpr_low / _high from the same resamples (`piimem.metrics.bootstrap_roc`: the
    threshold is chosen anew in each resample, so the interval holds the threshold's uncertainty too).

    `scores`: `attack_scores` output; `labels`: (index, member: bool[, group]). With a `group` column (the
    examples' link groups, threads) the bootstrap draws whole groups, since the texts of one thread are not
    independent; n_groups counts them (without it every example is its own group). Examples with a null or
    NaN score are left out and counted in n_unscored.
    """
    if not {"index", "member"} <= set(labels.columns):
        raise ValueError(f"evaluate_attacks: labels need columns index, member; got {labels.columns}")
    grouped = "group" in labels.columns
    joined = scores.join(labels.select("index", "member", *(["group"] if grouped else [])), on="index",
                         how="inner")
    if joined.height != scores.height:
        raise ValueError(f"evaluate_attacks: {scores.height - joined.height} scored example(s) have no label")
    rows = []
    for (attack,), group in joined.group_by(["attack"], maintain_order=True):
        scored = group.filter(pl.col("score").is_not_null() & pl.col("score").is_not_nan())
        s, y = scored["score"].to_numpy(), scored["member"].to_numpy()
        groups = scored["group"].to_numpy() if grouped else None
        aucs, tprs = bootstrap_roc(s, y, n=bootstrap, seed=seed, fprs=fprs, groups=groups)
        low, high = percentile_interval(aucs, level)
        row = {
            "attack": attack,
            "reference": group["reference"][0] if "reference" in group.columns else None,
            "n_members": int(y.sum()),
            "n_nonmembers": int((~y).sum()),
            "n_groups": scored["group"].n_unique() if grouped else scored.height,
            "n_unscored": group.height - scored.height,
            "auc": roc_auc(s, y),
            "auc_low": low,
            "auc_high": high,
        }
        for fpr in fprs:
            row[_fpr_label(fpr)] = tpr_at_fpr(s, y, fpr)
            row[f"{_fpr_label(fpr)}_low"], row[f"{_fpr_label(fpr)}_high"] = percentile_interval(tprs[fpr], level)
        rows.append(row)
    schema = {"attack": pl.Utf8, "reference": pl.Utf8, "n_members": pl.Int64, "n_nonmembers": pl.Int64,
              "n_groups": pl.Int64, "n_unscored": pl.Int64, "auc": pl.Float64, "auc_low": pl.Float64,
              "auc_high": pl.Float64}
    schema.update({f"{_fpr_label(f)}{end}": pl.Float64 for f in fprs for end in ("", "_low", "_high")})
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


# ------------------------------------------------------------------------------------------
# One job's scoring: the base model's reference statistics, every checkpoint's attacks


def member_sample(path) -> pl.DataFrame:
    """A member sample (`mia_members`, or a defense's view of it: `mia_trained_texts`) with `index`, its row
    in the sample, beside member and text (null where the view leaves the message out)."""
    return pl.read_parquet(path).with_row_index("index").with_columns(pl.col("index").cast(pl.Int64))


def scoring_statistics(model, tokenizer, sample: pl.DataFrame, scoring: dict, *, max_length: int,
                       device: str) -> pl.DataFrame:
    """`sample_statistics` with the columns the configured attacks read; `scoring`: the mia section's attacks,
    min_k and batch_size (what the reference pass and every checkpoint's pass score alike)."""
    return sample_statistics(model, tokenizer, sample, max_length=max_length, batch_size=scoring["batch_size"],
                             device=device, **statistics_options(scoring["attacks"], scoring["min_k"]))


@dataclass
class MembershipInference:
    """The attacks on a run's checkpoints, on each view of the member sample: `original` (the members' own
    text) and, for a defended run, `trained` (the text it trained on), each with the base model's statistics
    of it (the Ref attack's reference) and, when enabled, its blind baseline, which reads no model and is
    scored once for every checkpoint. `mia`: the config's mia section."""

    tokenizer: object
    views: dict[str, tuple[pl.DataFrame, pl.DataFrame]]  # view -> (member_sample, reference statistics)
    blind: dict[str, pl.DataFrame]  # view -> blind_baseline scores
    mia: dict
    base_model: str
    max_length: int
    device: str

    @classmethod
    def from_files(cls, tokenizer, *, members, reference, trained=None, trained_reference=None, mia: dict,
                   base_model: str, max_length: int, device: str) -> MembershipInference:
        from piimem.blind import BlindConfig

        views = {"original": (member_sample(members), pl.read_parquet(reference))}
        if trained is not None:
            views["trained"] = (member_sample(trained), pl.read_parquet(trained_reference))
        blind = {view: blind_baseline(texts, tokenizer, max_length,
                                      BlindConfig.from_config(mia["blind"], seed=mia["seed"]))
                 for view, (texts, _) in views.items()} if mia["blind"]["enabled"] else {}
        for view, scores in blind.items():
            log.info("blind baseline, %s text: AUC %.3f without any model", view, roc_auc(
                scores["score"], scores.join(views[view][0], on="index")["member"]))
        return cls(tokenizer, views, blind, mia, base_model, max_length, device)

    def tables(self, model, checkpoint: dict) -> dict[str, pl.DataFrame]:
        """One checkpoint's attack results over every view (`results`, stamped with the checkpoint) and its
        per-example scores (`scores`: index, member, group, n_tokens, nll_mean, one column per attack, the
        view in member_text; no text) for the ROC and loss-distribution figures (membership_inference's
        outputs)."""
        from piimem.metric_names import HEADLINE_ATTACK
        from piimem.runs import stamp

        mia, tables, per_example = self.mia, [], []
        for view, (texts, reference) in self.views.items():
            example_stats = scoring_statistics(model, self.tokenizer, texts, mia, max_length=self.max_length,
                                               device=self.device)
            scores = attack_scores(example_stats, reference, mia["attacks"], mia["min_k"],
                                   reference=f"base model {self.base_model}")
            if view in self.blind:
                scores = pl.concat([scores, self.blind[view]])
            labels = texts.filter(pl.col("text").is_not_null()).select(
                "index", "member", *(["group"] if "group" in texts.columns else []))
            table = evaluate_attacks(scores, labels, bootstrap=mia["bootstrap"], seed=mia["seed"])
            tables.append(table.with_columns(member_text=pl.lit(view)))
            per_example.append(labels.join(example_stats.select("index", "n_tokens", "nll_mean"), on="index")
                               .join(scores.pivot("attack", index="index", values="score"), on="index")
                               .with_columns(member_text=pl.lit(view)).sort("index"))
            loss = table.filter(pl.col("attack") == HEADLINE_ATTACK)
            log.info("checkpoint %s, %s text: LOSS AUC %.3f", checkpoint["id"], view,
                     loss["auc"][0] if loss.height else float("nan"))
        return {"results": stamp(pl.concat(tables), checkpoint), "scores": pl.concat(per_example)}
