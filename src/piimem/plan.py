"""What a configuration plans: its defense and tuning variants, runs, checkpoints, the results each run gets,
and the tables and figures the report writes. `Plan.of(config)` computes it once; the Snakefile and the report
read that one object. (Checks of the config that a JSON schema cannot express: piimem.config.)

The schema (workflow/schemas/config.schema.yaml) has already filled defaults and checked types, so everything
here can index the config directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from piimem.metric_names import TARGETED_ATTACKS  # its keys are the targeted attacks' names
from piimem.runs import RunId, variant_name


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what was expected."""


def hf_mapped(config: dict) -> bool:
    """Whether the splits are a data set's own (corpus.source hf with a corpus.hf.splits mapping)."""
    corpus = config.get("corpus", {})
    return corpus.get("source") == "hf" and corpus.get("hf", {}).get("splits") is not None


def has_split(config: dict, split: str) -> bool:
    """Whether the split can hold records: a data set split mapped to it, or a fraction above 0."""
    if hf_mapped(config):
        return config["corpus"]["hf"]["splits"].get(split) is not None
    return config.get("corpus", {}).get("split", {}).get("fractions", {}).get(split, 0) > 0


def split_key(config: dict, split: str) -> str:
    """The config key that gives `split` its records."""
    return f"corpus.hf.splits.{split}" if hf_mapped(config) else f"corpus.split.fractions.{split}"


def split_needed(config: dict, split: str) -> str:
    """What gives `split` records, as an instruction."""
    return f"set {split_key(config, split)} " + ("to a split of the data set" if hf_mapped(config) else "above 0")


def outsiders(config: dict) -> bool:
    """Whether the tiny GPT-2 pre-trains on the synthetic outsiders' mail (corpus.synthetic.pretrain) rather
    than on the public split."""
    corpus = config["corpus"]
    return corpus["source"] == "synthetic" and corpus.get("synthetic", {}).get("pretrain", {}).get("n_mailboxes", 0) > 0


def corpus_name(config: dict) -> str:
    corpus = config["corpus"]
    if corpus["name"]:
        return corpus["name"]
    if corpus["source"] == "maildir":
        return Path(corpus["path"]).resolve().name
    if corpus["source"] == "hf":
        name = Path(corpus["hf"]["path"].rstrip("/")).name
        return f"{name}-{corpus['hf']['name']}" if corpus["hf"]["name"] else name
    return corpus["source"]


def model_slug(name: str) -> str:
    """A file-name-safe form of a model name: "EleutherAI/pythia-160m" -> "EleutherAI--pythia-160m".

    Path separators become "--" (as in the Hugging Face cache), any other character outside
    [A-Za-z0-9._-] becomes "_", and leading dots and dashes are dropped so the slug is never hidden or
    mistaken for an option or a parent directory.
    """
    parts = [part for part in re.split(r"[/\\]+", name.strip()) if part not in ("", ".")]
    slug = "--".join(re.sub(r"[^A-Za-z0-9._-]", "_", part) for part in parts).lstrip(".-")
    if not slug:
        raise ValueError(f"base model name {name!r} gives an empty slug; expected e.g. 'EleutherAI/pythia-160m'")
    return slug


def _as_list(value) -> list:
    return list(value) if isinstance(value, list) else [value]


def dedup_thresholds(config: dict) -> list[float]:
    """The Jaccard thresholds of the deduplication stage: `dedup.threshold`, one value or a sweep list."""
    return _as_list(config["dedup"]["threshold"])


@dataclass(frozen=True)
class NamedOption:
    """An option of a defense that the names of its variants show (`defense_variants`)."""

    key: str  # under the defense's config section; dotted when nested ("substring.min_bytes")
    label: Callable[[object], str]  # a value as a name part: 0.5 -> "p0.5"
    sweepable: bool = False  # the schema takes a list: one variant per value, each named
    paper: bool = False  # a paper fixes it, at the schema's default: any other value is named too
    always: bool = False  # a single value is named too (DP's ε)
    needs: str | None = None  # a boolean option it matters only under (min_bytes: substring.enabled)


# The options a defense variant's name shows are its defense's `named_options` (piimem.defense). The paper options
# are those the papers fix (docs/defenses.md and docs/corpus.md, "Deduplication"; RMFT: scope email, keep first,
# p 1, masked once; deduplication: 128 permutations, Jaccard 0.8, lower-cased one-word shingles, then repeats of
# >= 100 bytes removed): a run away from any of them carries it in its name (rmft_p0.5, dedup_t0.7), so that
# no table sets it beside the paper's figures and no claim of the paper reads it (`at_paper_setting`).
def _named_options(kind: str) -> tuple[NamedOption, ...]:
    """The options the names of `kind`'s variants show; none for a name no defense has."""
    from piimem.defense import DEFENSE_KINDS

    return DEFENSE_KINDS[kind].named_options if kind in DEFENSE_KINDS else ()


def _option(config: dict, kind: str, key: str):
    """A defense option's value in `config`, the schema's default where the config leaves it out."""
    from piimem.schema import default

    here = config.get(kind) or {}
    for part in key.split("."):
        if not isinstance(here, dict) or part not in here:
            value = default(f"{kind}.{key}")
            return list(value) if isinstance(value, tuple) else value
        here = here[part]
    return here


def _paper_value(kind: str, option: NamedOption):
    from piimem.schema import default

    return default(f"{kind}.{option.key}")


def _named(kind: str, option: NamedOption, values: list, value) -> bool:
    """Whether `value`, one of `option`'s `values`, shows in its variant's name: every value of a sweep, a
    value always named, a value away from the paper's."""
    return len(values) > 1 or option.always or (option.paper and value != _paper_value(kind, option))


def defense_variants(config: dict) -> dict[str, dict]:
    """Every training text to build, by name: {name: {"defense": kind, **swept options}}.

    A defense is one variant named as in `defenses`, unless an option of its `named_options` lists several values
    or is set away from the paper's setting: each such option adds a part to the name. `rmft.scope: [email,
    all]` gives rmft_email and rmft_all (the all-type scope alone is rmft_all too: plain "rmft" is always the
    paper's setting), `rmft.p: [0.5, 1.0]` rmft_p0.5 and rmft_p1 (both: rmft_email_p0.5, ...), `rmft.p: 0.5`
    alone rmft_p0.5, `rmft.keep: last` rmft_keeplast, `rmft.redraw_per_epoch: true` rmft_redraw,
    `dedup.threshold: [0.7, 0.8]` dedup_t0.7 and dedup_t0.8 (`0.7` alone: dedup_t0.7; `num_perm`,
    `shingle_words`, `lowercase`, `substring` away from the paper's: _perm64, _shingle2, _cased, _nosubstring,
    _minbytes50), `dp.epsilon: [1, 8]` dp_e1 and dp_e8 (a single ε too is named: dp_e8; `dp.batch_size` and
    `dp.lr` lists add _b64, _lr0.001). The variant's options hold the values of the options a list can sweep:
    RMFT's `scope` and `p`, dedup's `threshold`, DP's `epsilon`, `batch_size` and `lr`. Names never hold "-",
    which separates the parts of a run's name.
    """
    out: dict[str, dict] = {}
    for kind in config["defenses"]:
        variants = {kind: {"defense": kind}}
        for option in _named_options(kind):
            if option.needs and not _option(config, kind, option.needs):
                continue
            value = _option(config, kind, option.key)
            values = _as_list(value) if option.sweepable else [value]
            variants = {(variant_name(name, [option.label(v)]) if _named(kind, option, values, v) else name):
                        {**options, **({option.key: v} if option.sweepable else {})}
                        for name, options in variants.items() for v in values}
        out.update(variants)
    return out


def at_paper_setting(variant: str) -> bool:
    """Whether a defense variant's name says it runs at every setting the papers fix: each part of its name
    is the label of a paper option at the paper's value (rmft, rmft_email, rmft_p1, dedup, dedup_t0.8, none),
    none away from it (rmft_p0.5, rmft_all, rmft_keeplast, rmft_redraw, dedup_t0.7). DP's always-named ε is
    no paper setting (neither paper trains with DP): dp_e8 is not."""
    from piimem.defense import DEFENSES
    from piimem.runs import parse_variant

    kind, parts = parse_variant(variant, DEFENSES)
    paper = {option.label(_paper_value(kind, option)) for option in _named_options(kind) if option.paper}
    return set(parts) <= paper


def training_texts(config: dict) -> dict[str, str]:
    """{defense variant: the name of the training text it trains on}: a variant that rewrites the text has its
    own; the variants of a defense that trains on the train split as is (none, dp) share one, named after
    their defense, so that sweeping DP's ε builds no copies of the split."""
    from piimem.defense import DEFENSE_KINDS

    return {name: name if DEFENSE_KINDS[variant["defense"]].rewrites_text else variant["defense"]
            for name, variant in defense_variants(config).items()}


def _value_label(value) -> str:
    """A swept option's value as a name part: 0.002 -> "0.002", 2e-05 -> "0.00002", never a "-"."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return np.format_float_positional(value, trim="-")
    return str(value)


def tuning_variants(config: dict) -> dict[str, dict]:
    """Every tuning run's name by what it trains: {name: {"tuning": method, "options": {...}, "swept": {...}}}.

    A method is one variant named as in `tuning_methods`, with `options` its config block `tuning.<method>`,
    unless an option lists values: then one variant per value (per combination, in the listed order), each
    option with several values adding `_{option}{value}` to the name (`tuning.lora.lr: [2e-4, 2e-3]` gives
    lora_lr0.0002 and lora_lr0.002) and its value to `swept`. A one-value list is that value.
    """
    out: dict[str, dict] = {}
    for method in config["tuning_methods"]:
        block = config.get("tuning", {}).get(method) or {}
        variants = {method: ({}, {})}
        for key, value in block.items():
            values = _as_list(value)
            variants = {(variant_name(name, [f"{key}{_value_label(v)}"]) if len(values) > 1 else name):
                        ({**options, key: v}, {**swept, key: v} if len(values) > 1 else swept)
                        for name, (options, swept) in variants.items() for v in values}
        for name, (options, swept) in variants.items():
            if "-" in name or "/" in name:
                raise ConfigError(f"tuning.{method}: the run name {name!r} would hold '-' or '/'; "
                                  f"swept values may not")
            out[name] = {"tuning": method, "options": options, "swept": swept}
    return out


def swept(config: dict) -> bool:
    """Whether any tuning option lists several values (a sweep, from which tuning.select picks)."""
    return any(variant["swept"] for variant in tuning_variants(config).values())


def variant_options(config: dict, name: str) -> dict:
    """The options `piimem.defense.build_training_text` takes for the defense variant `name` (its defense's
    `Defense.options`): for RMFT the rmft section with the variant's p and its scope's entity types (and
    `epochs`, the texts to write), for scrubbing the scrub section, nothing for the others."""
    from piimem.defense import DEFENSE_KINDS

    variant = defense_variants(config)[name]
    return DEFENSE_KINDS[variant["defense"]].options(config, variant)


def dp_options(config: dict, name: str) -> dict | None:
    """What a run of the defense variant `name` trains with under DP-SGD (its defense's `Defense.dp_options`):
    the `dp` section with the variant's ε, batch size and learning rate (`lr`, None: the run's own; the other
    keys are piimem.train.dp.DPConfig's); None for a defense that trains without DP-SGD."""
    from piimem.defense import DEFENSE_KINDS

    variant = defense_variants(config)[name]
    return DEFENSE_KINDS[variant["defense"]].dp_options(config, variant)


def _matches(run_value, wanted) -> bool:
    """Whether an exclude entry's value (one value or a list of them) names the run's value; a defense
    run carries the set {variant, kind}, so a kind names all its variants."""
    values = _as_list(wanted)
    if isinstance(run_value, set):
        return any(v in run_value for v in values)
    return run_value in values


def run_names(config: dict) -> list[str]:
    """The runs "{model slug}/{defense variant}-{tuning variant}-s{seed}": the cross product of base_models,
    defense variants, tuning variants (tuning_variants) and seeds, minus those matching an entry of `exclude`.

    An exclude entry matches a run when every key it gives matches: base_model (as in base_models),
    defense (a kind, which covers all its variants, or a variant name), tuning (a method, which covers
    its sweep's variants, or a variant name), seed; a key may list
    several values, any of which matches (so one entry can leave out a whole block of the cross product).
    """
    variants, tunings = defense_variants(config), tuning_variants(config)
    runs, used = [], [False] * len(config["exclude"])
    for model in config["base_models"]:
        for variant, options in variants.items():
            for tuning, trained in tunings.items():
                for seed in config["seeds"]:
                    run = {"base_model": model, "defense": {variant, options["defense"]},
                           "tuning": {tuning, trained["tuning"]}, "seed": seed}
                    hits = [all(_matches(run[k], v) for k, v in entry.items()) for entry in config["exclude"]]
                    used = [u or h for u, h in zip(used, hits)]
                    if not any(hits):
                        runs.append(RunId(model_slug(model), variant, tuning, seed).path)
    unused = [i for i, u in enumerate(used) if not u]
    if unused:
        raise ConfigError(f"exclude[{unused[0]}]: {config['exclude'][unused[0]]} matches no run (check the "
                          f"names against base_models, defenses, tuning_methods and seeds)")
    if not runs:
        raise ConfigError("exclude: every run is excluded; nothing would be trained")
    return runs


def canaries_measured(config: dict) -> bool:
    """Canary exposure runs on the synthetic corpus, which plants the canaries, unless turned off."""
    return config["corpus"]["source"] == "synthetic" and config["extraction"]["canaries"]["enabled"]


def attacked_by_extraction(config: dict, tuning: str) -> bool:
    """Whether the extraction attack (and canary exposure) runs on the runs of a tuning method: the config
    has prompt sets and the method is in extraction.tuning_methods (null: every method)."""
    methods = config["extraction"]["tuning_methods"]
    return bool(config["extraction"]["prompt_sets"]) and (methods is None or tuning in methods)


def extracted(config: dict, run: str) -> bool:
    """Whether the extraction attack (and canary exposure) runs on `run`."""
    return attacked_by_extraction(config, tuning_variants(config)[RunId.parse(run).tuning]["tuning"])


def result_kinds(config: dict, run: str) -> list[str]:
    """The per-checkpoint results a run gets: utility and mia always; extraction, canaries and the targeted
    attacks where measured."""
    kinds = ["utility", "mia"]
    if extracted(config, run):
        kinds.append("extraction")
        if canaries_measured(config):
            kinds.append("canaries")
        if targeted_attacks(config) and _targeted_defense(config, RunId.parse(run).defense):
            kinds.append("targeted")
    if audited(config):
        kinds.append("audit")
    return kinds


def audited(config: dict) -> bool:
    """Whether the runs carry audit canaries (audit.canaries > 0): every run is then audited."""
    return config.get("audit", {}).get("canaries", 0) > 0


def _targeted_defense(config: dict, variant: str) -> bool:
    """Whether extraction.targeted_defenses (null: all) names the defense variant or its kind."""
    wanted = config["extraction"].get("targeted_defenses")
    return wanted is None or _matches({variant, defense_variants(config)[variant]["defense"]}, wanted)


def targeted_attacks(config: dict) -> list[str]:
    """The targeted attacks the config enables (extraction.inference / reconstruction / association)."""
    return [attack for attack in TARGETED_ATTACKS if config["extraction"][attack]["enabled"]]


def kind_checkpoints(config: dict, kind: str, checkpoints: list[str]) -> list[str]:
    """The checkpoints a result kind is measured at: every one, but the audit only at the last, and the
    targeted attacks only at the last with extraction.targeted_checkpoints `last`."""
    if kind == "targeted" and config["extraction"]["targeted_checkpoints"] == "last":
        return checkpoints[-1:]
    if kind == "audit":  # the model a run releases
        return checkpoints[-1:]
    return checkpoints


def result_stems(config: dict, runs: list[str]) -> tuple[list[str], list[str]]:
    """(tables, figures) the report stage writes for this config: those whose data the runs produce.

    Extraction feeds the RMFT and extraction tables and the TER figures; MaxTER also needs a run of the
    defense `none` beside another defense of the same base model and tuning method; canary exposure needs
    the synthetic corpus with canaries enabled; the audit, audit canaries. Membership inference and perplexity
    always run.
    """
    extraction = any(extracted(config, run) for run in runs)
    tables = ["finetuning", "claims"] + (["tuning_sweep"] if swept(config) else [])
    figures = ["metrics_by_checkpoint", "mia_auc_by_epoch", "roc_curves", "loss_distributions",
               "privacy_utility_auc"]
    if has_split(config, "validation"):
        figures.append("auc_by_val_ppl")
    if extraction:
        tables += ["rmft", "extraction_by_type", "extraction_by_repetition"]
        figures += ["extraction_by_repetition", "privacy_utility_ter"]
        variants = defense_variants(config)
        kinds: dict[tuple[str, str], set[str]] = {}
        for run in map(RunId.parse, filter(lambda r: extracted(config, r), runs)):
            kinds.setdefault((run.base, run.tuning), set()).add(variants[run.defense]["defense"])
        if any("none" in found and len(found) > 1 for found in kinds.values()):
            figures.append("maxter")
    if canaries_measured(config) and extraction:
        figures.append("canary_exposure")
    if any("targeted" in result_kinds(config, run) for run in runs):
        tables.append("targeted")
        figures.append("targeted_attacks")
    if audited(config):
        tables.append("audit")
        figures.append("audit")
    return tables, figures


def checkpoint_ids(epochs: int, checkpoints_per_epoch: int) -> list[str]:
    """Ids of the checkpoints a run saves, known before training: c01 .. cNN (wider when N > 99)."""
    total = epochs * checkpoints_per_epoch
    width = max(2, len(str(total)))
    return [f"c{k:0{width}d}" for k in range(1, total + 1)]


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything a config plans, computed once (`Plan.of`): the defense variants with their kind and options,
    the training text of each, the tuning variants, the runs, the checkpoints, the result kinds of each run,
    and the tables and figures the report writes."""

    config: dict = field(repr=False)
    defenses: dict[str, dict]  # defense variant -> {"defense": kind, options...} (defense_variants)
    texts: dict[str, str]  # defense variant -> the training text it trains on (training_texts)
    tunings: dict[str, dict]  # tuning variant -> {"tuning": method, "options", "swept"} (tuning_variants)
    runs: tuple[str, ...]  # "{base}/{defense}-{tuning}-s{seed}" (run_names)
    checkpoints: tuple[str, ...]
    kinds: dict[str, tuple[str, ...]]  # run -> its result kinds (result_kinds)
    tables: tuple[str, ...]
    figures: tuple[str, ...]

    @classmethod
    def of(cls, config: dict) -> Plan:
        runs = run_names(config)
        tables, figures = result_stems(config, runs)
        return cls(config=config, defenses=defense_variants(config), texts=training_texts(config),
                   tunings=tuning_variants(config), runs=tuple(runs),
                   checkpoints=tuple(checkpoint_ids(config["train"]["epochs"],
                                                    config["train"]["checkpoints_per_epoch"])),
                   kinds={run: tuple(result_kinds(config, run)) for run in runs}, tables=tuple(tables),
                   figures=tuple(figures))

    def result_files(self) -> list[str]:
        """Every per-checkpoint result file of every run (`results/runs/{run}/{kind}/{checkpoint}.tsv`)."""
        return [f"results/runs/{run}/{kind}/{checkpoint}.tsv" for run in self.runs for kind in self.kinds[run]
                for checkpoint in kind_checkpoints(self.config, kind, list(self.checkpoints))]

    def identity(self) -> list[dict]:
        """One row per run: who it is, as the report reads it instead of parsing names (results/runs.parquet):
        base model slug, defense variant and kind, whether it is at the papers' settings, its options (JSON),
        tuning variant and method, the swept values (JSON), seed."""
        rows = []
        for run in map(RunId.parse, self.runs):
            defense, tuning = self.defenses[run.defense], self.tunings[run.tuning]
            options = {k: v for k, v in defense.items() if k != "defense"}
            rows.append({"base_model": run.base, "defense": run.defense, "defense_kind": defense["defense"],
                         "at_paper_setting": at_paper_setting(run.defense),
                         "defense_options": json.dumps(options, sort_keys=True), "tuning": run.tuning,
                         "method": tuning["tuning"], "swept": json.dumps(tuning["swept"], sort_keys=True),
                         "seed": run.seed})
        return rows
