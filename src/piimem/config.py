"""Checks of the configuration that a JSON schema cannot express, and values derived from it.

The schema (workflow/schemas/config.schema.yaml) has already filled defaults and checked types,
so everything here can index the config directly.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from piimem.metric_names import TARGETED_ATTACKS  # its keys are the targeted attacks' names
from piimem.runs import RunId, variant_name


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what was expected."""


def unknown_keys(config: dict) -> list[str]:
    """One line per config key the schema does not know, each with the nearest key it does know:
    "config: unknown key 'defences' (did you mean 'defenses'?)", "... 'rmft.pp' (did you mean 'rmft.p'?)".

    The workflow raises these before Snakemake's `validate`, whose own message for an unknown key is followed
    by the whole schema and config (thousands of lines).
    """
    from piimem.schema import schema

    return _unknown_keys(config, schema(), "")


def _resolved(spec: dict) -> dict:
    """A schema node with its $ref replaced by the definition it names."""
    if "$ref" not in spec:
        return spec
    from piimem.schema import schema

    target = schema()["definitions"][spec["$ref"].rsplit("/", 1)[-1]]
    return {**target, **{k: v for k, v in spec.items() if k != "$ref"}}


def _unknown_keys(value, spec: dict, prefix: str) -> list[str]:
    spec = _resolved(spec)
    if isinstance(value, list) and isinstance(spec.get("items"), dict):
        return [line for i, item in enumerate(value) for line in _unknown_keys(item, spec["items"], f"{prefix}[{i}]")]
    if not isinstance(value, dict):
        return []
    objects = [_resolved(b) for b in spec.get("anyOf", []) if _resolved(b).get("type") == "object"]
    if len(objects) == 1:  # a value that is one value or a mapping (a prompt file or a data set)
        spec = objects[0]
    known, extra = spec.get("properties", {}), spec.get("additionalProperties", True)
    lines = []
    for key, item in value.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key in known:
            lines += _unknown_keys(item, known[key], path)
        elif isinstance(extra, dict):  # a mapping of the user's own names (extraction.prompt_files)
            lines += _unknown_keys(item, extra, path)
        elif extra is False:
            lines.append(_unknown_key_line(path, prefix, str(key), list(known)))
    return lines


def _unknown_key_line(path: str, prefix: str, key: str, known: list[str]) -> str:
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    where = f"{prefix}." if prefix else ""
    if near:
        return f"config: unknown key {path!r} (did you mean {where + near[0]!r}?)"
    return f"config: unknown key {path!r} (the keys {'under ' + repr(prefix) if prefix else 'at the top level'} " \
           f"are {', '.join(sorted(known))}; docs/configuration.md lists them all)"


def text_values(config: dict) -> list[str]:
    """One line per value that is text where its key takes a number or true/false, and reads as one: Snakemake
    reads a list or mapping given with --config (`--config rmft='{p: 0.5}'`) with YAML's base loader, which
    leaves every value in it text, and `validate` then says only "'0.5' is not valid under any of the given
    schemas"."""
    from piimem.schema import schema

    lines = {}
    for key, value in _text_values(config, schema(), ""):
        key = re.sub(r"\[\d+\]", "", key)
        if isinstance(yaml.safe_load(value), str):  # 1e-3: YAML 1.1 reads an exponent without a dot as text
            dotted = re.sub(r"^([+-]?[0-9]+)([eE])", r"\1.0\2", value)
            lines.setdefault(key, f"config: {key} holds the text {value!r} where a number is expected: YAML reads "
                                  f"a number with an exponent but no dot as text; write it as {dotted}")
        else:  # a list's first such item
            lines.setdefault(key, f"config: {key} holds the text {value!r} where a number or true/false is expected: "
                                  f"a list or mapping given with --config holds text only; set {key} in a YAML file "
                                  f"given with --configfile")
    return list(lines.values())


def _branches(spec: dict) -> list[dict]:
    spec = _resolved(spec)
    return [b for branch in spec["anyOf"] for b in _branches(branch)] if "anyOf" in spec else [spec]


def _text_values(value, spec: dict, prefix: str) -> list[tuple[str, str]]:
    """(key, value) of each text value under `prefix` whose schema takes no text but a number or true/false."""
    branches = _branches(spec)
    if isinstance(value, dict):
        known = {k: v for b in branches for k, v in b.get("properties", {}).items()}
        return [line for k, item in value.items() if k in known
                for line in _text_values(item, known[k], f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(value, list):
        items = [b["items"] for b in branches if isinstance(b.get("items"), dict)]
        return [line for i, item in enumerate(value) for spec_ in items[:1]
                for line in _text_values(item, spec_, f"{prefix}[{i}]")]
    types = {t for b in branches for t in ([b["type"]] if isinstance(b.get("type"), str) else b.get("type", ["?"]))}
    if not isinstance(value, str) or types & {"string", "?"}:  # "?": a node of no stated type takes anything
        return []
    return [(prefix, value)] if _reads_as_number(value) else []


def _reads_as_number(text: str) -> bool:
    """Whether YAML reads `text` as a number or true/false, or it is a number that YAML 1.1 reads as text (1e-3)."""
    try:
        if isinstance(yaml.safe_load(text), (bool, int, float)):
            return True
        float(text)
        return True
    except (yaml.YAMLError, ValueError):
        return False


def check_config(config: dict) -> None:
    corpus = config["corpus"]
    if corpus["source"] == "maildir":
        if not corpus["path"]:
            raise ConfigError("corpus.path: required when corpus.source is 'maildir' (the root of a "
                              "<mailbox>/<folder>/<file> tree; in the config file, or --config corpus='{path: ...}')")
    fractions = corpus["split"]["fractions"]
    if not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-9):
        raise ConfigError(f"corpus.split.fractions: must sum to 1, got {fractions} (sum {sum(fractions.values()):g})")
    if corpus["source"] == "hf":
        _check_hf(config)
    if not has_split(config, "train"):
        raise ConfigError(f"{split_key(config, 'train')}: {split_needed(config, 'train')} (the models are fine-tuned "
                          f"on it)")
    _check_extraction(config)
    _check_defenses(config)
    if swept(config) and config["tuning"]["select"] == "val_ppl" and not has_split(config, "validation"):
        name = next(n for n, v in tuning_variants(config).items() if v["swept"])
        raise ConfigError(f"tuning: {name!r} is one run of a sweep, and tuning.select val_ppl picks among them by "
                          f"validation perplexity: {split_needed(config, 'validation')}")
    from piimem.metrics import tau_grid

    try:
        tau_grid(config["report"]["tau_max"], config["report"]["tau_step"])
    except ValueError as error:
        raise ConfigError(str(error)) from None
    from piimem.models import is_tiny_gpt2, tiny_gpt2_options

    tiny_models = [name for name in config["base_models"] if is_tiny_gpt2(name)]
    for name in tiny_models:
        try:
            tiny_gpt2_options(name, config["tiny_gpt2"])
        except ValueError as error:
            raise ConfigError(str(error)) from None
    if tiny_models:
        tiny, block = config["tiny_gpt2"], config["train"]["block_size"]
        if not has_split(config, "public") and not outsiders(config):
            what = "must name a split of the data set" if hf_mapped(config) else "must be above 0"
            raise ConfigError(f"{split_key(config, 'public')}: {what} when base_models has a tiny GPT-2 (it is "
                              f"pre-trained on it; or, on the synthetic corpus, set "
                              f"corpus.synthetic.pretrain.n_mailboxes)")
        if outsiders(config) and corpus["synthetic"]["pretrain"]["seed"] == corpus["synthetic"]["seed"]:
            raise ConfigError(f"corpus.synthetic.pretrain.seed: must differ from corpus.synthetic.seed "
                              f"({corpus['synthetic']['seed']}), or the outsiders would be the same people")
        if block > tiny["n_positions"]:
            raise ConfigError(f"train.block_size: {block} exceeds tiny_gpt2.n_positions ({tiny['n_positions']})")
        from piimem.tuning import virtual_tokens

        for variant in tuning_variants(config).values():
            method = variant["tuning"]
            extra = virtual_tokens(method, variant["options"])
            if block + extra > tiny["n_positions"]:
                raise ConfigError(
                    f"tuning.{method}.num_virtual_tokens: train.block_size ({block}) + {extra} virtual tokens exceed "
                    f"tiny_gpt2.n_positions ({tiny['n_positions']})"
                )
            generated = config["extraction"]["prompt_tokens"] + config["extraction"]["new_tokens"]
            if attacked_by_extraction(config, method) and generated + extra > tiny["n_positions"]:
                raise ConfigError(
                    f"extraction.new_tokens: prompt_tokens + new_tokens ({generated}) + {extra} virtual tokens of "
                    f"{method} exceed tiny_gpt2.n_positions ({tiny['n_positions']})"
                )
        if tiny["n_embd"] % tiny["n_head"]:
            raise ConfigError(f"tiny_gpt2.n_embd: {tiny['n_embd']} is not a multiple of "
                              f"tiny_gpt2.n_head ({tiny['n_head']})")


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


def _check_hf(config: dict) -> None:
    from piimem.corpus.dataset import HfSource

    try:
        HfSource.from_config(config["corpus"]["hf"])
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if hf_mapped(config) and not has_split(config, "test"):
        raise ConfigError("corpus.hf.splits.test: must name a split of the data set (the non-members and the test "
                          "perplexity come from it)")


def _check_defenses(config: dict) -> None:
    """Each listed defense's own checks (`Defense.check`, piimem.defense), in the registry's order."""
    from piimem.defense import DEFENSE_KINDS

    for kind in DEFENSE_KINDS.values():
        if kind.name in config["defenses"]:
            kind.check(config)


# What a missing input does: a real run refuses to start; a job downloads it; its own jobs fail, saying what to
# put where, while the rest of the run goes on (--keep-going).
STOPS, DOWNLOADED, FAILS_ITS_JOBS = "stops", "downloaded", "fails its jobs"
MISSING_HEADINGS = {
    STOPS: "a real run stops before any job until it is there",
    DOWNLOADED: "a job downloads it, which needs network",
    FAILS_ITS_JOBS: "its own jobs fail saying so; the rest of the run goes on",
}
# Where the workflow puts the CMU tarball and its extraction (workflow/rules/corpus.smk), and its size
# (docs/corpus.md).
CMU_TARBALL = "resources/cmu/enron_mail_20150507.tar.gz"
CMU_MAILDIR = "resources/cmu/maildir"
CMU_TARBALL_SIZE = "about 423 MB"


@dataclass(frozen=True)
class MissingInput:
    """An input the config points to that is not on this machine."""

    text: str  # the key, what is missing and the fix
    then: str  # STOPS, DOWNLOADED or FAILS_ITS_JOBS


def missing_inputs(config: dict, built_models_dir: str = "results/models") -> list[MissingInput]:
    """Every input the config points to that is not on this machine, each naming its key and the fix (after
    check_config): the corpus (a maildir path that does not exist or holds no mail file, a data set that does
    not load offline, the CMU tarball still to download), every base model that does not load offline,
    and the prompt files and prompt data sets of extraction.prompt_sets that are not there.

    The workflow lists them in one block on every call, so that a dry run on a login node shows all that is
    missing at once; a real run stops before any job on those that `STOPS`. An error found before any job
    costs seconds, where the same error at job time comes after the corpus stages. `built_models_dir` is
    where the workflow exports smollm2-135m."""
    missing = _missing_corpus(config)
    from piimem.models import ModelNotAvailableError, check_base_model_available

    for name in config["base_models"]:
        try:
            check_base_model_available(name, built_dir=Path(built_models_dir))
        except ModelNotAvailableError as err:
            missing.append(MissingInput(str(err), STOPS))
    for name, path in missing_prompt_files(config):
        missing.append(MissingInput(
            f"extraction.prompt_files.{name}: {path!r} does not exist. Put the prompt texts there (UTF-8, one text "
            f"per line; docs/attacks.md, 'PII extraction', shows how to write WikiText-2's)", FAILS_ITS_JOBS))
    from piimem.corpus.dataset import DatasetNotAvailableError, HfSource, check_available

    for name, spec in prompt_datasets(config).items():
        try:
            check_available(HfSource.from_config({k: v for k, v in spec.items() if k != "split"},
                                                 key=f"extraction.prompt_files.{name}"))
        except (DatasetNotAvailableError, ValueError) as err:
            missing.append(MissingInput(str(err), FAILS_ITS_JOBS))
    return missing


def _missing_corpus(config: dict) -> list[MissingInput]:
    corpus = config["corpus"]
    if corpus["source"] == "maildir":
        from piimem.corpus.maildir import first_mail_file

        if not Path(corpus["path"]).is_dir():
            return [MissingInput(f"corpus.path: {corpus['path']!r} is not a directory. Point corpus.path at the root "
                                 f"of a maildir, whose <mailbox>/<folder>/<file> entries are messages", STOPS)]
        if first_mail_file(corpus["path"]) is None:
            return [MissingInput(
                f"corpus.path: {corpus['path']!r} holds no mail files: no file inside a mailbox directory "
                f"(hidden names skipped). Point corpus.path at the root of a maildir, whose "
                f"<mailbox>/<folder>/<file> entries are messages", STOPS)]
    if corpus["source"] == "cmu" and not Path(CMU_MAILDIR).is_dir() and not Path(CMU_TARBALL).is_file():
        return [MissingInput(
            f"corpus.source cmu: the CMU Enron tarball ({CMU_TARBALL_SIZE}) is not at {CMU_TARBALL}; the job "
            f"download_cmu fetches it from corpus.cmu.url ({corpus['cmu']['url']}). Offline (a compute node), "
            f"download it elsewhere and put it there, same name", DOWNLOADED)]
    if corpus["source"] == "hf":
        from piimem.corpus.dataset import DatasetNotAvailableError, HfSource, check_available

        try:
            check_available(HfSource.from_config(corpus["hf"]))
        except DatasetNotAvailableError as err:
            return [MissingInput(str(err), STOPS)]
    return []


def missing_inputs_block(missing: list[MissingInput]) -> str:
    """The missing inputs as one block, grouped by what each does to a run."""
    lines = [f"piimem: {len(missing)} input(s) of this config are not on this machine (a dry run plans on):"]
    for then, heading in MISSING_HEADINGS.items():
        group = [m.text for m in missing if m.then == then]
        if group:
            lines.append(f"  {heading}:")
            lines += [f"  - {text}" for text in group]
    return "\n".join(lines)


def missing_prompt_files(config: dict) -> list[tuple[str, str]]:
    """(prompt set, path) of each prompt file of extraction.prompt_sets not on disk."""
    extraction = config.get("extraction", {})
    return [(name, path) for name, path in extraction.get("prompt_files", {}).items()
            if name in extraction["prompt_sets"] and isinstance(path, str) and not Path(path).is_file()]


def prompt_datasets(config: dict) -> dict[str, dict]:
    """{prompt set: its data set (corpus.hf's keys and a split)} of extraction.prompt_sets given as data sets."""
    extraction = config.get("extraction", {})
    return {name: spec for name, spec in extraction.get("prompt_files", {}).items()
            if name in extraction["prompt_sets"] and isinstance(spec, dict)}


BUILT_IN_PROMPT_SETS = ("train-prefix", "test", "public")


def _check_extraction(config: dict) -> None:
    extraction = config["extraction"]
    files = extraction["prompt_files"]
    for name in extraction["prompt_sets"]:
        if name in BUILT_IN_PROMPT_SETS:
            if name in files:
                raise ConfigError(f"extraction.prompt_files.{name}: {name!r} is a built-in prompt set; "
                                  "name the file otherwise")
            if name != "train-prefix" and not has_split(config, name):
                raise ConfigError(f"extraction.prompt_sets: {name!r} needs its split: {split_needed(config, name)}")
        elif name not in files:
            raise ConfigError(f"extraction.prompt_sets: {name!r} is neither one of {list(BUILT_IN_PROMPT_SETS)} nor a "
                              f"name in extraction.prompt_files ({sorted(files) or 'none given'})")
    # A prompt file not on disk yet is no config error: its one job fails saying what to put where
    # (missing_prompt_file), and the rest of the run goes on.
    methods = extraction["tuning_methods"]
    if methods is not None:
        unknown = [m for m in methods if m not in config["tuning_methods"]]
        if unknown:
            raise ConfigError(f"extraction.tuning_methods: {unknown} not in tuning_methods {config['tuning_methods']}")
    wanted = extraction.get("targeted_defenses")
    if wanted is not None:  # a defense this config does not run is allowed (a shared file), a typo is not
        from piimem.defense import DEFENSES

        unknown = [d for d in wanted if d not in {*DEFENSES, *defense_variants(config)}]
        if unknown:
            raise ConfigError(f"extraction.targeted_defenses: {unknown} are neither defenses {list(DEFENSES)} nor "
                              f"variants of this config's")
    detected = config["pii"]["entity_types"]
    for key in ("entity_types", "prefix_entity_types"):
        extra = [t for t in extraction[key] if t not in detected]
        if extra:
            raise ConfigError(f"extraction.{key}: {extra} not in pii.entity_types {detected} (the true PII set "
                              f"comes from the PII stage)")
    extra = [t for t in extraction["inference"]["entity_types"] or [] if t not in extraction["entity_types"]]
    if extra:
        raise ConfigError(f"extraction.inference.entity_types: {extra} not in extraction.entity_types "
                          f"{extraction['entity_types']}")
    from piimem.extraction.association import check_template

    for name, template in extraction["association"]["templates"].items():
        try:
            check_template(name, template)
        except ValueError as error:
            raise ConfigError(str(error)) from None


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
