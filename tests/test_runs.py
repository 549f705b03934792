"""Run identity (names and paths) and the loop over a run's checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from made_up_text import made_up_docs

from piimem.models import init_tiny_gpt2, train_tokenizer
from piimem.runs import ResultFile, RunId, checkpoint_models


def test_run_names_and_paths_round_trip():
    run = RunId("EleutherAI--pythia-160m", "rmft_email_p0.5", "lora", 42)
    assert run.name == "rmft_email_p0.5-lora-s42" and str(run) == "EleutherAI--pythia-160m/rmft_email_p0.5-lora-s42"
    assert RunId.parse(run.path) == run
    result = ResultFile.parse(f"results/runs/{run}/mia/c07.tsv")
    assert (result.run, result.kind, result.checkpoint) == (run, "mia", "c07")


@pytest.mark.parametrize("bad", ["none-full-s1", "tiny-gpt2/none-full", "a/b/none-full-s1", "tiny-gpt2/no-ne-full-s1"])
def test_a_malformed_run_path_is_refused(bad):
    with pytest.raises(ValueError, match="not a run path"):
        RunId.parse(bad)


def test_names_that_would_break_a_path_are_refused():
    with pytest.raises(ValueError, match="defense 'rmft-all'"):
        RunId("tiny-gpt2", "rmft-all", "full", 1)


def test_checkpoint_models_load_each_checkpoint_for_its_output(tmp_path):
    tok = train_tokenizer(made_up_docs(50, 1, letters="klmnop", vocabulary=40, words=(3, 20)), 300)
    base = init_tiny_gpt2(tok, n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=1)
    checkpoints = []
    for i, scale in ((1, 0.0), (2, 1.0)):
        model = init_tiny_gpt2(tok, n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=1)
        with torch.no_grad():
            model.lm_head.weight.add_(scale)
        model.save_pretrained(tmp_path / "checkpoints" / f"c0{i}")
        checkpoints.append({"id": f"c0{i}", "epoch": float(i), "path": f"checkpoints/c0{i}", "train_loss": None})
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"checkpoints": checkpoints}))
    outputs = [tmp_path / "out" / "c02.tsv", tmp_path / "out" / "c01.tsv"]
    seen = [(output.name, checkpoint["id"], model.lm_head.weight.sum().item() - base.lm_head.weight.sum().item())
            for output, checkpoint, model in checkpoint_models(manifest, outputs, base)]
    assert [s[:2] for s in seen] == [("c02.tsv", "c02"), ("c01.tsv", "c01")]
    assert seen[0][2] == pytest.approx(base.lm_head.weight.numel(), rel=1e-3)
    assert seen[1][2] == pytest.approx(0, abs=1e-3)
    with pytest.raises(ValueError, match=r"checkpoint 'c09' is not in .*manifest.json"):
        list(checkpoint_models(manifest, [tmp_path / "c09.tsv"], base))


def test_a_variant_name_parses_back_to_its_defense_or_method_and_parts():
    from piimem.defense import DEFENSES
    from piimem.runs import parse_variant, variant_name
    from piimem.tuning import TUNING_METHODS

    assert variant_name("rmft", ["all", "p0.5"]) == "rmft_all_p0.5"
    assert parse_variant("rmft_all_p0.5", DEFENSES) == ("rmft", ["all", "p0.5"])
    assert parse_variant("dp_e8", DEFENSES) == ("dp", ["e8"])
    assert parse_variant("none", DEFENSES) == ("none", [])
    assert parse_variant("lora_mlp_lr0.002", TUNING_METHODS) == ("lora_mlp", ["lr0.002"])  # the longest base
    assert parse_variant("lora_lr0.002", TUNING_METHODS) == ("lora", ["lr0.002"])
    assert parse_variant("mine_v2", DEFENSES) == ("mine", ["v2"])  # an unknown base: up to the first "_"


def test_every_defense_variant_name_parses_back_to_its_defense():
    from piimem.defense import DEFENSES
    from piimem.plan import defense_variants
    from piimem.runs import parse_variant

    config = {"defenses": ["none", "rmft", "dedup", "dp"], "rmft": {"scope": ["email", "all"], "p": [0.5, 1.0]},
              "dedup": {"threshold": [0.7, 0.8]}, "dp": {"epsilon": [1, 8], "batch_size": None, "lr": [None, 0.001]}}
    variants = defense_variants(config)
    assert len(variants) == 1 + 4 + 2 + 4
    assert {name: parse_variant(name, DEFENSES)[0] for name in variants} == \
        {name: variant["defense"] for name, variant in variants.items()}
    assert parse_variant("rmft_all_p0.5", DEFENSES)[1] == ["all", "p0.5"] and "rmft_all_p0.5" in variants


@pytest.mark.parametrize(("options", "names"), [
    # One value away from the paper's setting names the variant, as a sweep's values do.
    ({"rmft": {"p": 0.5}}, ["rmft_p0.5"]),
    ({"rmft": {"p": [0.5]}}, ["rmft_p0.5"]),
    ({"rmft": {"p": 1}}, ["rmft"]),  # the paper's p, however written
    ({"rmft": {"keep": "last"}}, ["rmft_keeplast"]),
    ({"rmft": {"redraw_per_epoch": True}}, ["rmft_redraw"]),
    ({"rmft": {"scope": "all", "p": 0.5, "keep": "random", "redraw_per_epoch": True}},
     ["rmft_all_p0.5_keeprandom_redraw"]),
    ({"rmft": {"p": [0.5, 1.0], "keep": "last"}}, ["rmft_p0.5_keeplast", "rmft_p1_keeplast"]),
    ({"dedup": {"threshold": 0.7}}, ["dedup_t0.7"]),
    ({"dedup": {"num_perm": 64, "shingle_words": 2, "lowercase": False}}, ["dedup_perm64_shingle2_cased"]),
    ({"dedup": {"substring": {"enabled": False, "min_bytes": 50}}}, ["dedup_nosubstring"]),  # no bytes to name
    ({"dedup": {"substring": {"min_bytes": 50}}}, ["dedup_minbytes50"]),
    ({"dedup": {"threshold": [0.7, 0.8], "substring": {"enabled": False}}},
     ["dedup_t0.7_nosubstring", "dedup_t0.8_nosubstring"]),
])
def test_a_defense_away_from_the_papers_setting_names_it_and_parses_back(options, names):
    from piimem.defense import DEFENSES
    from piimem.plan import defense_variants
    from piimem.report.select import Identity
    from piimem.runs import parse_variant

    kind = next(iter(options))
    variants = defense_variants({"defenses": ["none", kind], **options})
    assert list(variants) == ["none", *names]
    for name in names:
        assert RunId.parse(f"tiny-gpt2/{name}-full-s42").defense == name
        assert parse_variant(name, DEFENSES)[0] == kind
        assert Identity.of_names([name]).is_paper(name, "rmft") == (name == "rmft")


def test_only_the_papers_settings_stand_beside_the_papers_figures():
    from piimem.plan import at_paper_setting, defense_variants
    from piimem.report.select import Identity

    def is_paper_rmft(name: str) -> bool:
        return Identity.of_names([name]).is_paper(name, "rmft")

    paper = ["rmft", "rmft_email", "rmft_p1", "rmft_email_p1", "rmft_keepfirst", "rmft_email_p1_keepfirst_static"]
    assert [name for name in paper if not is_paper_rmft(name)] == []
    away = ["rmft_all", "rmft_p0.5", "rmft_email_p0.5", "rmft_keeplast", "rmft_redraw", "rmft_all_p1", "dedup", "none"]
    assert [name for name in away if is_paper_rmft(name)] == []
    assert at_paper_setting("dedup") and at_paper_setting("dedup_t0.8") and not at_paper_setting("dedup_t0.7")
    assert at_paper_setting("none") and not at_paper_setting("dp_e8")  # neither paper trains with DP
    # A sweep keeps the paper's value beside the others: only that variant is the paper's RMFT.
    swept = defense_variants({"defenses": ["rmft"], "rmft": {"p": [0.5, 1.0], "scope": ["email", "all"]}})
    assert [name for name in swept if is_paper_rmft(name)] == ["rmft_email_p1"]
