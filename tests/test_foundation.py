"""Config checks, private-file modes, progress lines and PII normal forms."""

import logging
import stat

import polars as pl
import pytest

from piimem.config import STOPS, ConfigError, check_config, missing_inputs
from piimem.defense.rmft import rmft_entity_types
from piimem.io import fingerprint, write_private_parquet, write_table
from piimem.pii import normalize
from piimem.plan import checkpoint_ids, corpus_name, defense_variants, result_kinds, result_stems, run_names
from piimem.progress import Progress, track
from piimem.runs import RunId

# The targeted attacks' keys as the schema's defaults fill them (these configs skip validation).
TARGETED = {"inference": {"enabled": True, "entity_types": None}, "reconstruction": {"enabled": True},
            "association": {"enabled": True, "templates": {"email-of": "the email address of {name} is {email}"}},
            "targeted_checkpoints": "last"}


def _config(base_models=("tiny-gpt2",), block_size=128, n_positions=256, n_embd=128, n_head=4, **corpus):
    base = {"source": "synthetic", "path": None, "name": None,
            "split": {"fractions": {"train": 0.6, "test": 0.2, "public": 0.2}}}
    base.update(corpus)
    return {"corpus": base, "base_models": list(base_models), "train": {"block_size": block_size}, "defenses": ["none"],
            "report": {"tau_max": 20, "tau_step": 0.5},
            "tuning_methods": ["full", "prompt"], "tuning": {"prompt": {"num_virtual_tokens": 100}},
            "tiny_gpt2": {"n_positions": n_positions, "n_embd": n_embd, "n_head": n_head},
            "pii": {"entity_types": ["PERSON", "EMAIL_ADDRESS"]},
            "extraction": {"prompt_sets": ["train-prefix", "test"], "prompt_files": {}, "prompt_tokens": 64,
                           "tuning_methods": None,
                           "new_tokens": 64, "entity_types": ["EMAIL_ADDRESS"],
                           "prefix_entity_types": ["EMAIL_ADDRESS"], "canaries": {"enabled": True}, **TARGETED}}


def test_fractions_must_sum_to_one():
    with pytest.raises(ConfigError, match=r"corpus\.split\.fractions: must sum to 1.*sum 0\.9"):
        check_config(_config(split={"fractions": {"train": 0.5, "test": 0.2, "public": 0.2}}))


def test_train_fraction_must_be_positive():
    with pytest.raises(ConfigError, match=r"corpus\.split\.fractions\.train"):
        check_config(_config(split={"fractions": {"train": 0.0, "test": 0.5, "public": 0.5}}))


def test_maildir_source_needs_an_existing_path(tmp_path):
    with pytest.raises(ConfigError, match=r"corpus\.path: required"):
        check_config(_config(source="maildir"))
    # A path not on this machine is a missing input (a dry run on a login node plans on), not a config error.
    nowhere = _config(source="maildir", path=str(tmp_path / "nowhere"))
    check_config(nowhere)
    assert [(m.then, m.text[:40]) for m in missing_inputs(nowhere)] == [
        (STOPS, f"corpus.path: {str(tmp_path / 'nowhere')!r} is not a directory"[:40])]
    assert "is not a directory. Point corpus.path at the root of a maildir" in missing_inputs(nowhere)[0].text
    check_config(_config(source="maildir", path=str(tmp_path)))
    assert corpus_name(_config(source="maildir", path=str(tmp_path))) == tmp_path.name
    assert corpus_name(_config(source="maildir", path=str(tmp_path), name="mine")) == "mine"
    assert corpus_name(_config()) == "synthetic"


def test_tiny_gpt2_settings_must_fit_together():
    with pytest.raises(ConfigError, match=r"train\.block_size: 512 exceeds tiny_gpt2\.n_positions \(256\)"):
        check_config(_config(block_size=512))
    with pytest.raises(ConfigError, match=r"tuning\.prompt\.num_virtual_tokens: train\.block_size \(200\) \+ 100"):
        check_config(_config(block_size=200))
    with pytest.raises(ConfigError, match=r"tiny_gpt2\.n_embd: 130 is not a multiple of tiny_gpt2\.n_head \(4\)"):
        check_config(_config(n_embd=130))
    with pytest.raises(ConfigError, match=r"corpus\.split\.fractions\.public: must be above 0 when base_models"):
        check_config(_config(split={"fractions": {"train": 0.8, "test": 0.2, "public": 0.0}}))
    check_config(_config(base_models=["gpt2"], block_size=512,
                         split={"fractions": {"train": 0.8, "test": 0.2, "public": 0.0}}))


def test_extraction_settings_must_fit_the_corpus_and_the_model(tmp_path):
    config = _config()
    config["extraction"]["prompt_sets"] = ["wiki"]
    with pytest.raises(ConfigError, match=r"'wiki' is neither one of .* nor a name in extraction.prompt_files"):
        check_config(config)
    config["extraction"]["prompt_files"] = {"wiki": str(tmp_path / "wiki.txt")}
    check_config(config)  # not on disk yet: the workflow plans a job that says where to put it
    config["extraction"].update(prompt_sets=["public"], prompt_files={})
    config["corpus"]["split"]["fractions"] = {"train": 0.8, "test": 0.2, "public": 0.0}
    config["base_models"] = ["gpt2"]
    with pytest.raises(ConfigError, match=r"'public' needs its split: set corpus.split.fractions.public above 0"):
        check_config(config)
    config = _config()
    config["extraction"]["entity_types"] = ["US_SSN"]
    with pytest.raises(ConfigError, match=r"extraction.entity_types: \['US_SSN'\] not in pii.entity_types"):
        check_config(config)
    config = _config()
    config["extraction"]["new_tokens"] = 100  # 64 + 100 + prompt tuning's 100 virtual tokens > 256
    with pytest.raises(ConfigError, match=r"extraction.new_tokens: prompt_tokens \+ new_tokens \(164\) \+ 100"):
        check_config(config)
    config["extraction"]["tuning_methods"] = ["full"]  # prompt tuning's runs are not attacked by extraction
    check_config(config)
    config["extraction"]["tuning_methods"] = ["head"]
    with pytest.raises(ConfigError, match=r"extraction.tuning_methods: \['head'\] not in tuning_methods"):
        check_config(config)


def _sweep(**overrides):
    config = {"defenses": ["none", "dedup", "rmft"], "rmft": {"p": 1.0, "scope": "email"}, "dedup": {"threshold": 0.8},
              "base_models": ["tiny-gpt2", "EleutherAI/pythia-160m"], "tuning_methods": ["full", "lora"],
              "seeds": [1, 2], "exclude": [], "corpus": {"source": "synthetic"},
              "extraction": {"prompt_sets": ["test"], "canaries": {"enabled": True}, "tuning_methods": None,
                             **TARGETED}}
    config.update(overrides)
    return config


def test_rmft_scopes_are_named_variants_with_their_entity_types():
    both = _sweep(rmft={"p": 1.0, "scope": ["email", "all"], "entity_types": ["PERSON", "EMAIL_ADDRESS"]})
    variants = defense_variants(both)
    assert variants["rmft_email"] == {"defense": "rmft", "scope": "email", "p": 1.0}
    assert variants["rmft_all"] == {"defense": "rmft", "scope": "all", "p": 1.0}
    assert rmft_entity_types(both, "email") == ["EMAIL_ADDRESS"]
    assert rmft_entity_types(both, "all") == ["PERSON", "EMAIL_ADDRESS"]
    # The all-type scope alone keeps its name part: plain "rmft" is always the paper's e-mail scope.
    assert "rmft_all" in defense_variants(_sweep(rmft={"p": 1.0, "scope": "all"}))
    swept = defense_variants(_sweep(rmft={"p": [0.5, 1.0], "scope": ["email", "all"]}))
    assert [n for n in swept if n.startswith("rmft")] == ["rmft_email_p0.5", "rmft_email_p1", "rmft_all_p0.5",
                                                         "rmft_all_p1"]


def test_defenses_rewrite_only_detected_pii_types():
    config = _config()
    config.update(defenses=["rmft", "scrub"], rmft={"scope": "all", "entity_types": ["PERSON", "US_SSN"]},
                  scrub={"entity_types": ["PERSON"]})
    with pytest.raises(ConfigError, match=r"rmft\.entity_types: RMFT scope 'all' rewrites \['US_SSN'\]"):
        check_config(config)
    config["rmft"] = {"scope": "email", "entity_types": ["PERSON"]}
    config["pii"]["entity_types"] = ["PERSON"]
    config["extraction"].update(prompt_sets=[], entity_types=["PERSON"], prefix_entity_types=["PERSON"])
    with pytest.raises(ConfigError, match=r"rmft\.scope: RMFT scope 'email' rewrites \['EMAIL_ADDRESS'\]"):
        check_config(config)


def test_sweeps_are_the_cross_product_minus_exclusions():
    assert list(defense_variants(_sweep())) == ["none", "dedup", "rmft"]
    swept = _sweep(rmft={"p": [0.5, 1.0], "scope": "email"}, dedup={"threshold": [0.7, 0.85]})
    assert defense_variants(swept) == {
        "none": {"defense": "none"}, "dedup_t0.7": {"defense": "dedup", "threshold": 0.7},
        "dedup_t0.85": {"defense": "dedup", "threshold": 0.85},
        "rmft_p0.5": {"defense": "rmft", "scope": "email", "p": 0.5},
        "rmft_p1": {"defense": "rmft", "scope": "email", "p": 1.0}}
    runs = run_names(_sweep())
    assert len(runs) == 2 * 3 * 2 * 2 and "EleutherAI--pythia-160m/rmft-lora-s2" in runs
    assert RunId.parse("EleutherAI--pythia-160m/rmft_p0.5-lora-s2") == RunId(
        "EleutherAI--pythia-160m", "rmft_p0.5", "lora", 2)
    runs = run_names(_sweep(exclude=[{"base_model": "EleutherAI/pythia-160m", "tuning": "full"},
                                     {"defense": "dedup", "seed": 2}]))
    assert len(runs) == 24 - 6 - 3  # 6 pythia/full runs, 4 dedup/s2 runs of which 1 is pythia/full
    assert "tiny-gpt2/dedup-full-s2" not in runs and "tiny-gpt2/dedup-full-s1" in runs
    # a defense kind covers all its variants; a variant name only itself
    runs = run_names(_sweep(rmft={"p": [0.5, 1.0], "scope": "email"}, exclude=[{"defense": "rmft_p0.5"}]))
    assert not any("rmft_p0.5" in r for r in runs) and sum("rmft_p1-" in r for r in runs) == 8
    swept = _sweep(rmft={"p": [0.5, 1.0], "scope": "email"}, exclude=[{"defense": "rmft"}])
    assert not any("rmft" in r for r in run_names(swept))
    # A list names several values: the defended runs of every method but full, in one entry.
    both = run_names(_sweep(tuning_methods=["full", "lora", "prefix"],
                            exclude=[{"defense": ["dedup", "rmft"], "tuning": ["lora", "prefix"]}]))
    assert len(both) == 2 * 2 * (3 + 1 + 1) and "tiny-gpt2/rmft-lora-s1" not in both
    assert "tiny-gpt2/none-prefix-s1" in both and "tiny-gpt2/dedup-full-s2" in both
    with pytest.raises(ConfigError, match=r"exclude\[0\]: \{'tuning': 'prefix'\} matches no run"):
        run_names(_sweep(exclude=[{"tuning": "prefix"}]))
    with pytest.raises(ConfigError, match="every run is excluded"):
        run_names(_sweep(exclude=[{"seed": 1}, {"seed": 2}]))


def test_extraction_runs_on_the_tuning_methods_it_names():
    config = _sweep(extraction={"prompt_sets": ["test"], "canaries": {"enabled": True}, "tuning_methods": ["full"],
                                **TARGETED})
    runs = run_names(config)
    assert result_kinds(config, "tiny-gpt2/rmft-full-s1") == ["utility", "mia", "extraction", "canaries", "targeted"]
    assert result_kinds(config, "tiny-gpt2/none-lora-s1") == ["utility", "mia"]
    for attack in ("inference", "reconstruction", "association"):
        config["extraction"][attack] = {"enabled": False}
    assert result_kinds(config, "tiny-gpt2/rmft-full-s1") == ["utility", "mia", "extraction", "canaries"]
    assert "maxter" in result_stems(config, runs)[1]
    config["extraction"]["tuning_methods"] = ["lora"]
    assert result_kinds(config, "tiny-gpt2/rmft-full-s1") == ["utility", "mia"]


def test_result_stems_follow_what_the_runs_produce():
    tables, figures = result_stems(_sweep(), run_names(_sweep()))
    assert tables == ["finetuning", "claims", "rmft", "extraction_by_type", "extraction_by_repetition", "targeted"]
    assert "maxter" in figures and "canary_exposure" in figures and "targeted_attacks" in figures
    only_none = _sweep(defenses=["none"], extraction={"prompt_sets": [], "canaries": {"enabled": True},
                                                      "tuning_methods": None},
                       corpus={"source": "cmu"})
    tables, figures = result_stems(only_none, run_names(only_none))
    assert tables == ["finetuning", "claims"]
    assert figures == ["metrics_by_checkpoint", "mia_auc_by_epoch", "roc_curves", "loss_distributions",
                       "privacy_utility_auc"]
    # MaxTER compares a defense with `none` of the same base model and tuning method
    apart = _sweep(exclude=[{"defense": "none", "tuning": "lora"}, {"defense": "dedup", "tuning": "full"},
                            {"defense": "rmft", "tuning": "full"}])
    assert "maxter" not in result_stems(apart, run_names(apart))[1]


def test_checkpoint_ids():
    assert checkpoint_ids(3, 10) == [f"c{k:02d}" for k in range(1, 31)]
    assert checkpoint_ids(1, 1) == ["c01"]
    assert checkpoint_ids(20, 10)[:2] == ["c001", "c002"] and len(checkpoint_ids(20, 10)) == 200


def test_fingerprint_follows_settings_and_file_contents(tmp_path):
    data = tmp_path / "texts.parquet"
    data.write_bytes(b"one")
    first = fingerprint({"lr": 1e-3}, [data])
    assert fingerprint({"lr": 1e-3}, [data]) == first
    assert fingerprint({"lr": 2e-3}, [data]) != first
    data.write_bytes(b"two")
    assert fingerprint({"lr": 1e-3}, [data]) != first
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with_dir = fingerprint({}, [folder])
    (folder / "config.json").write_text('{"n_layer": 2}')
    assert fingerprint({}, [folder]) != with_dir


def test_private_files_are_0600_in_0700_directory_even_when_overwritten(tmp_path):
    target = tmp_path / "results" / "private" / "pii" / "spans.parquet"
    target.parent.mkdir(parents=True)
    target.write_text("old")
    target.chmod(0o644)
    write_private_parquet(pl.DataFrame({"value": ["a@b.com"]}), target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "results" / "private").stat().st_mode) == 0o700
    assert pl.read_parquet(target)["value"].to_list() == ["a@b.com"]


def test_write_table_by_suffix(tmp_path):
    df = pl.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    write_table(df, tmp_path / "t.tsv")
    assert (tmp_path / "t.tsv").read_text().splitlines() == ["a\tb", "1\tx", "2\ty"]
    with pytest.raises(ValueError, match=r"unknown table format '\.xlsx'"):
        write_table(df, tmp_path / "t.xlsx")


def test_progress_logs_counts_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="piimem")
    assert list(track(range(5), total=5, desc="parsing", unit="files", every_s=0.0)) == list(range(5))
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("parsing: 1/5 (20.0 %) files,")
    assert "ETA" in lines[0] and "files/s" in lines[0]
    assert lines[-1].startswith("parsing: 5/5 (100.0 %) files") and lines[-1].endswith("(done)")


def test_progress_without_total_has_no_eta():
    progress = Progress(None, "hashing", unit="docs")
    progress.done = 7
    assert progress.line().startswith("hashing: 7 docs,") and "ETA" not in progress.line()


@pytest.mark.parametrize(
    ("entity_type", "a", "b"),
    [
        ("EMAIL_ADDRESS", "<Jane.Doe@Example.COM>", "jane.doe@example.com"),
        ("PHONE_NUMBER", "+1 (713) 853-1234", "713.853.1234"),
        ("US_SSN", "536-90-4399", "536 90 4399"),
        ("CREDIT_CARD", "4111 1111 1111 1111", "4111-1111-1111-1111"),
        ("PERSON", "Jane  DOE", "jane doe"),
        ("LOCATION", "Houston,", "houston"),
    ],
)
def test_normal_forms_agree(entity_type, a, b):
    assert normalize(entity_type, a) == normalize(entity_type, b)


def test_normal_forms_keep_distinct_values_apart():
    assert normalize("PHONE_NUMBER", "713 853 1234") != normalize("PHONE_NUMBER", "713 853 1235")
    assert normalize("EMAIL_ADDRESS", "a.b@x.com") != normalize("EMAIL_ADDRESS", "ab@x.com")
