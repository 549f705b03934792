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
