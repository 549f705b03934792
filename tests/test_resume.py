"""Resumable state between checkpoints (train.state_every), a real hard kill, and the kept training log.

Tiny GPT-2 on made-up text, CPU. Dropout is on, so equal weights after a resume also need the saved
random generators.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from piimem.train import StateEvery, TrainConfig, read_train_log, train
from tiny_training import SMALL, epoch0_texts, tiny_model, training_docs

LOG_COLUMNS = ["step", "epoch", "loss", "lr"]


@pytest.fixture(scope="module")
def tok():
    from piimem.models import train_tokenizer

    return train_tokenizer(training_docs(300, seed=1), 300)


@pytest.fixture(scope="module")
def texts():
    return epoch0_texts(training_docs(30, seed=2), doc_ids=range(3, 93, 3))


# One checkpoint per epoch: far apart, as in a real run where a kill between them used to restart the epoch.
CFG = TrainConfig(**SMALL, epochs=2, checkpoints_per_epoch=1)


@pytest.fixture(scope="module")
def uninterrupted(tok, texts, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    model = tiny_model(tok)
    manifest = train(model, tok, texts, CFG, run_dir, fingerprint="fp", state_every={"steps": 4})
    return model, run_dir, manifest


def _assert_same_run(model, run_dir: Path, manifest: dict, reference) -> None:
    ref_model, ref_dir, ref_manifest = reference
    for (name, a), (_, b) in zip(ref_model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name
    assert [c["train_loss"] for c in manifest["checkpoints"]] == [c["train_loss"] for c in ref_manifest["checkpoints"]]
    assert manifest["tokens"] == ref_manifest["tokens"]
    for checkpoint in ref_manifest["checkpoints"]:
        for name in ("consumed.parquet",):
            assert pl.read_parquet(ref_dir / checkpoint["path"] / name).equals(
                pl.read_parquet(run_dir / checkpoint["path"] / name))
        a, b = (load_file(d / checkpoint["path"] / "model.safetensors") for d in (ref_dir, run_dir))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_train_log(run_dir / "train_log.tsv").select(LOG_COLUMNS).equals(
        read_train_log(ref_dir / "train_log.tsv").select(LOG_COLUMNS))


def test_state_every_steps_saves_between_checkpoints(uninterrupted):
    _, run_dir, manifest = uninterrupted
    assert manifest["steps_per_epoch"] == [25, 25] and [c["step"] for c in manifest["checkpoints"]] == [25, 50]
    # every 4 steps, counted again from each checkpoint: 4..24 and 29..49
    assert manifest["state_saves"] == 6 + 6 and manifest["state_seconds"] > 0
    assert not (run_dir / "state").exists()  # dropped once the run is complete


@pytest.mark.parametrize(("stop", "saved_at"), [(15, 12), (27, 25), (31, 29)])
def test_a_stop_between_checkpoints_loses_at_most_state_every(uninterrupted, tok, texts, tmp_path, stop, saved_at):
    run_dir = tmp_path / "run"
    partial = train(tiny_model(tok), tok, texts, CFG, run_dir, fingerprint="fp", stop_after_step=stop,
                    state_every=StateEvery(steps=4))
    assert partial["complete"] is False
    assert json.loads((run_dir / "state" / "state.json").read_text())["step"] == saved_at
    assert stop - saved_at < 4

    torch.manual_seed(123)  # a new process would start from other generator states
    model = tiny_model(tok)
    manifest = train(model, tok, texts, CFG, run_dir, fingerprint="fp", state_every=StateEvery(steps=4))
    assert manifest["complete"] is True and manifest["resumed_at_steps"] == [saved_at]
    _assert_same_run(model, run_dir, manifest, uninterrupted)
    # the interrupted attempt's rows are kept, then a marker, then the redone steps
    lines = (run_dir / "train_log.tsv").read_text().splitlines()
    marker = next(i for i, line in enumerate(lines) if line.startswith("#"))
    assert lines[marker].startswith(f"# resumed at step {saved_at}: ")
    assert [int(line.split("\t")[0]) for line in lines[1:marker]] == list(range(1, stop + 1))
    assert int(lines[marker + 1].split("\t")[0]) == saved_at + 1
    attempts = read_train_log(run_dir / "train_log.tsv", latest=False)
    assert attempts.group_by("attempt").len().sort("attempt")["len"].to_list() == [stop, 50 - saved_at]


def test_state_every_minutes(uninterrupted, tok, texts, tmp_path):
    # A limit far below one step's time: a state after every step that is not a checkpoint.
    model = tiny_model(tok)
    manifest = train(model, tok, texts, CFG, tmp_path / "often", fingerprint="fp",
                     state_every={"minutes": 1e-9, "steps": None})
    assert manifest["state_saves"] == 48  # 50 steps, less the two checkpoints
    _assert_same_run(model, tmp_path / "often", manifest, uninterrupted)
    # The default, every 5 minutes, saves nothing more in a run of seconds.
    manifest = train(tiny_model(tok), tok, texts, CFG, tmp_path / "default", fingerprint="fp")
    assert manifest["state_saves"] == 0


def test_a_restart_without_any_state_keeps_the_old_log(tok, texts, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_model(tok), tok, texts, CFG, run_dir, fingerprint="fp", stop_after_step=7)  # no state yet
    assert not (run_dir / "state").exists()
    manifest = train(tiny_model(tok), tok, texts, CFG, run_dir, fingerprint="fp")
    assert manifest["resumed_at_steps"] == []
    text = (run_dir / "train_log.tsv").read_text()
    assert "\n# restarted at step 0: " in text
    every_row = read_train_log(run_dir / "train_log.tsv", latest=False)
    assert every_row.filter(pl.col("attempt") == 1)["step"].to_list() == list(range(1, 8))
    assert read_train_log(run_dir / "train_log.tsv")["step"].to_list() == list(range(1, 51))


@pytest.mark.parametrize(("values", "message"), [
    ({"minutes": 0}, r"train\.state_every\.minutes: expected a number > 0 or null"),
    ({"steps": 0}, r"train\.state_every\.steps: expected an integer >= 1 or null"),
    ({"step": 5}, r"train\.state_every\.step: unknown key \(known: minutes, steps\)"),
])
def test_state_every_errors_name_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        StateEvery.from_dict(values)


def test_a_hard_kill_resumes_from_the_last_state(tok, texts, tmp_path):
    """SIGKILL the real entry point (python -m piimem.train_run) mid-run, then run it again."""
    from piimem.train_run import run

    model_dir = tmp_path / "base"
    tiny_model(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    texts.write_parquet(tmp_path / "texts.parquet")
    train_settings = {**SMALL, "epochs": 12, "checkpoints_per_epoch": 1}  # 300 steps: seconds to run

    def spec(name: str) -> dict:
        return {"base_model": str(model_dir), "models_dir": str(tmp_path), "tuning": "full",
                "tuning_options": {}, "train": train_settings, "texts": str(tmp_path / "texts.parquet"),
                "run_dir": str(tmp_path / name), "fingerprint": "fp", "threads": 1,
                "state_every": {"steps": 5}}

    killed = spec("killed")
    (tmp_path / "killed.json").write_text(json.dumps(killed))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="")
    proc = subprocess.Popen([sys.executable, "-m", "piimem.train_run", "--config", str(tmp_path / "killed.json")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = tmp_path / "killed" / "state" / "state.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if json.loads(state.read_text())["step"] >= 40:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        stderr = proc.communicate()[1].decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, stderr[-2000:]
    assert not (tmp_path / "killed" / "manifest.json").exists()
    logged = read_train_log(tmp_path / "killed" / "train_log.tsv")["step"].max()

    threads = torch.get_num_threads()
    try:
        resumed = run(killed)  # the same entry point, in this process
        reference = run(spec("reference"))
    finally:
        torch.set_num_threads(threads)
    saved_at = resumed["resumed_at_steps"][0]
    assert 40 <= saved_at < 300 and saved_at % 5 == 0  # a state_every save (checkpoints: every 25 steps)
    assert logged >= saved_at  # the killed attempt's rows are kept
    for checkpoint in reference["checkpoints"]:
        a, b = (load_file(tmp_path / d / checkpoint["path"] / "model.safetensors") for d in ("reference", "killed"))
        assert all(torch.equal(a[k], b[k]) for k in a), checkpoint["id"]
    assert [c["train_loss"] for c in resumed["checkpoints"]] == [c["train_loss"] for c in reference["checkpoints"]]
    assert "# resumed at step" in (tmp_path / "killed" / "train_log.tsv").read_text()
