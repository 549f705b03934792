"""Every Python default of a config key is the schema's: the dataclasses and functions that hold a config
section read their defaults from workflow/schemas/config.schema.yaml (piimem.schema), and this test lists
every such default with its key, so a default written twice, or a key renamed in one place, fails here."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from piimem import schema
from piimem.blind import BlindConfig
from piimem.corpus.dataset import HfSource
from piimem.corpus.splits import LinkConfig
from piimem.corpus.synthetic import SyntheticConfig
from piimem.dedup import DedupConfig
from piimem.intervals import LEVEL, RESAMPLES
from piimem.masking import RmftConfig
from piimem.metrics import TAU_MAX, TAU_STEP
from piimem.pii.detect import DEFAULT_SPACY_MODEL, detect_spans
from piimem.report.claims import ClaimSettings
from piimem.report.comparisons import Settings
from piimem.train.config import TrainConfig
from piimem.train.dp import DPConfig

# (class, {field: config key}); fields left out are no config key (a run's seed, the DP noise override, ...)
DATACLASSES = [
    (TrainConfig, {f: f"train.{f}" for f in ("block_size", "packing", "lr", "weight_decay", "epochs", "warmup_steps",
                                            "batch_size", "grad_accum", "max_grad_norm", "precision", "compile",
                                            "checkpoints_per_epoch", "device")}),
    (DedupConfig, {**{f: f"dedup.{f}" for f in ("num_perm", "threshold", "shingle_words", "lowercase", "seed",
                                                "verify")},
                   "substring_enabled": "dedup.substring.enabled", "substring_min_bytes": "dedup.substring.min_bytes"}),
    (RmftConfig, {f: f"rmft.{f}" for f in ("keep", "p", "redraw_per_epoch", "entity_types", "seed")}),
    (SyntheticConfig, {**{f: f"corpus.synthetic.{f}" for f in (
        "seed", "n_mailboxes", "messages_per_mailbox", "folders", "reply_fraction", "forward_fraction", "copy_fraction",
        "signature_fraction", "people_per_message", "popularity")},
        "canary_types": "corpus.synthetic.canaries.types",
        "canary_repetitions": "corpus.synthetic.canaries.repetitions",
        "canary_per_cell": "corpus.synthetic.canaries.per_cell"}),
    (LinkConfig, {**{f: f"corpus.split.link.{f}" for f in ("enabled", "threshold", "shingle_words", "min_words",
                                                           "containment", "containment_words", "min_ngrams",
                                                           "max_parts")},
                  "seed": "corpus.split.seed"}),
    (BlindConfig, {**{f: f"mia.blind.{f}" for f in ("ngram_range", "folds", "C", "max_features")}, "seed": "mia.seed"}),
    (DPConfig, {f: f"dp.{f}" for f in ("epsilon", "delta", "max_grad_norm", "accountant", "batch_size")}),
    (ClaimSettings, {**{f: f"claims.{f}" for f in ("min_strings", "max_ppl_increase", "chance_margin", "min_seeds",
                                                   "max_ppl_ratio")},
                     "level": "report.ci.level", "finetuning_epoch": "report.finetuning_epoch"}),
    (HfSource, {"text_field": "corpus.hf.text_field", "min_chars": "corpus.hf.min_chars"}),
    (Settings, {"level": "report.ci.level", "resamples": "report.ci.resamples", "seed": "report.ci.seed",
                "finetuning_epoch": "report.finetuning_epoch"}),
]


@pytest.mark.parametrize(("cls", "keys"), DATACLASSES, ids=lambda c: getattr(c, "__name__", ""))
def test_dataclass_defaults_are_the_schemas(cls, keys):
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    assert set(keys) <= set(fields)
    for name, key in keys.items():
        assert fields[name] == schema.default(key), f"{cls.__name__}.{name} differs from the schema's {key}"


def test_module_and_function_defaults_are_the_schemas():
    assert HfSource("x").splits == schema.default("corpus.hf.splits")
    assert (LEVEL, RESAMPLES, TAU_MAX, TAU_STEP, DEFAULT_SPACY_MODEL) == tuple(schema.default(k) for k in (
        "report.ci.level", "report.ci.resamples", "report.tau_max", "report.tau_step", "pii.spacy_model"))
    parameters = inspect.signature(detect_spans).parameters
    for name, key in (("score_threshold", "pii.score_threshold"), ("batch_size", "pii.batch_size"),
                      ("header_pii", "pii.header_pii")):
        assert parameters[name].default == schema.default(key)


def test_an_unknown_key_is_named():
    with pytest.raises(KeyError, match="config key 'train.no_such_key' is not in config.schema.yaml"):
        schema.default("train.no_such_key")


@pytest.mark.parametrize(("build", "message"), [
    (lambda: TrainConfig(block_size=4), "train.block_size: expected an integer >= 8, got 4"),
    (lambda: TrainConfig(epochs=True), "train.epochs: expected an integer >= 1, got True"),
    (lambda: TrainConfig(device="gpu"), "train.device: expected a string matching"),
    (lambda: DedupConfig(threshold=[0.5, 0.8]), r"dedup.threshold: expected a number in \(0, 1\], got \[0.5, 0.8\]"),
    (lambda: DedupConfig(seed=2**32), r"dedup.seed: expected an integer in \[0, 4294967295\]"),
    (lambda: DPConfig(batch_size=0), "dp.batch_size: expected an integer >= 1 or null, got 0"),
    (lambda: RmftConfig(keep="middle"), r"rmft.keep: expected one of \('first', 'last', 'random'\)"),
    (lambda: schema.check("rmft", {"entity_types": ["IBAN"]}),
     r"rmft.entity_types: expected a list of one of \('PERSON'"),
])
def test_dataclasses_check_their_values_against_the_schema(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_dataclasses_accept_what_the_schema_accepts():
    assert TrainConfig(max_grad_norm=0.0).max_grad_norm == 0.0  # 0: no clipping, in the schema too
    assert DPConfig(epsilon=None, noise_multiplier=0.0).epsilon is None  # a noise multiplier replaces epsilon
    assert DedupConfig(seed=2**32 - 1).seed == 2**32 - 1
