"""Checks of the configuration that a JSON schema cannot express: cross-key checks (`check_config`), misspelt
keys and numbers given as text, and the inputs a run needs that this machine lacks. (What a config plans,
its variants, runs and results: piimem.plan.)

The schema (workflow/schemas/config.schema.yaml) has already filled defaults and checked types,
so everything here can index the config directly.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from piimem.plan import (
    ConfigError,
    attacked_by_extraction,
    defense_variants,
    has_split,
    hf_mapped,
    outsiders,
    split_key,
    split_needed,
    swept,
    tuning_variants,
)


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




























































