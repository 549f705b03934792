"""Data-parallel training: two CPU processes (gloo) launched by torchrun, against one process.

This file is also the worker torchrun starts (`python tests/test_train_distributed.py spec.json ...`): it
runs each run description in turn through piimem.train_run.run, so one launch serves several runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from made_up_text import made_up_docs
from piimem.train import read_train_log
from piimem.train_run import launch_command, load_spec, run

N_DOCS = 28  # messages packing: 28 examples, 8 per global step -> the last step of each epoch holds 4,
BATCH = 4    # one micro-batch: rank 0 trains on it, rank 1 has nothing (the empty-process path)
TRAIN = dict(block_size=32, batch_size=BATCH, lr=3e-3, warmup_steps=2, device="cpu", precision="fp32",
             epochs=2, checkpoints_per_epoch=2, packing="messages")
STOP = 5  # between checkpoints (steps 2, 4, 6, 8): the resume redoes step 5 from the state of step 4
# Two processes sum per-micro-batch gradients that one process accumulates in the same order; only
# thread counts differ (torchrun starts workers with OMP_NUM_THREADS=1). Measured: 1.5e-6.
ATOL = 1e-5


def _launch(args: list[str], tmp: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(HF_HUB_OFFLINE="1", TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           "2", *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def runs():
    """Model directories (dropout off / on), texts, and the distributed runs, launched twice."""
    # A directory of its own rather than tmp_path_factory's: other pytest sessions on this machine prune
    # old basetemp folders, which has removed one under these launches while they ran.
    with tempfile.TemporaryDirectory(prefix="piimem-dist-") as name:
        yield _launch_runs(Path(name))


def _launch_runs(tmp: Path):
    from piimem.models import init_tiny_gpt2, train_tokenizer

    words = dict(letters="abcdefghij", vocabulary=80, words=(8, 50))
    tok = train_tokenizer(made_up_docs(300, 1, **words), 300)
    for name, p in (("nodrop", 0.0), ("drop", 0.1)):
        model = init_tiny_gpt2(tok, n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=7)
        model.config.update(dict(resid_pdrop=p, embd_pdrop=p, attn_pdrop=p))
        model.save_pretrained(tmp / name)
        tok.save_pretrained(tmp / name)
    pl.DataFrame({"epoch": [0] * N_DOCS, "doc_id": list(range(3, 3 * N_DOCS + 3, 3)),
                  "text": made_up_docs(N_DOCS, 2, **words)},
                 schema={"epoch": pl.Int64, "doc_id": pl.Int64, "text": pl.String}
                 ).write_parquet(tmp / "texts.parquet")

    def spec(name, run_dir, model, **extra):
        train = dict(TRAIN, **extra.pop("train", {}))
        data = {"base_model": str(tmp / model), "models_dir": str(tmp), "tuning": "full",
                "tuning_options": {},
                "train": train, "texts": str(tmp / "texts.parquet"), "run_dir": str(tmp / run_dir),
                "fingerprint": "fp", **extra}
        (tmp / f"{name}.json").write_text(json.dumps(data))
        return data

    specs = {"dist": spec("dist", "dist", "nodrop"), "full": spec("full", "full", "drop"),
             "stopped": spec("stopped", "stopped", "drop", stop_after_step=STOP),
             # state_every far below a step's time: rank 0's clock decides for both processes each step
             "resumed": spec("resumed", "stopped", "drop", state_every={"minutes": 1e-9}),
             "single": spec("single", "single", "nodrop", train={"grad_accum": 2})}
    # One launch, three train() calls in each process: the first starts the process group, the others
    # reuse it.
    _launch([__file__, "dist.json", "full.json", "stopped.json"], tmp)
    state = tmp / "stopped" / "state"
    saved = torch.load(state / "optimizer.pt", weights_only=True)
    partial = {"state_exists": (state / "state.json").is_file(), "rng_ranks": saved.get("rng_ranks"),
               "manifest_exists": (tmp / "stopped" / "manifest.json").exists(),
               "log_rows": len((tmp / "stopped" / "train_log.tsv").read_text().splitlines()) - 1}
    # A fresh launch through the command-line entry point resumes the stopped run.
    _launch(["-m", "piimem.train_run", "--config", "resumed.json"], tmp)
    return tmp, specs, partial


def _log(run_dir: Path) -> list[list[str]]:
    return [line.split("\t") for line in (run_dir / "train_log.tsv").read_text().splitlines()[1:]]


def _weights(run_dir: Path, checkpoint: str) -> dict:
    return load_file(run_dir / "checkpoints" / checkpoint / "model.safetensors")


def test_two_processes_equal_one_process_with_the_same_global_batch(runs):
    tmp, specs, _ = runs
    single = run(specs["single"])  # batch 4 x grad_accum 2: the same micro-batches as 2 processes x batch 4
    dist_dir, single_dir = tmp / "dist", tmp / "single"
    dist = json.loads((dist_dir / "manifest.json").read_text())
    assert dist["complete"] is True and dist["processes"] == 2 and single["processes"] == 1
    assert dist["examples_per_epoch"] == [N_DOCS, N_DOCS] and N_DOCS % (2 * BATCH) == BATCH
    for key in ("steps", "total_steps", "steps_per_epoch", "tokens", "documents"):
        assert dist[key] == single[key], key
    assert dist["steps_per_epoch"] == [4, 4]
    expected = [("c01", 2), ("c02", 4), ("c03", 6), ("c04", 8)]
    assert [(c["id"], c["step"]) for c in dist["checkpoints"]] == expected
    assert [(c["id"], c["step"]) for c in single["checkpoints"]] == expected
    for a, b in zip(dist["checkpoints"], single["checkpoints"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6, abs=1e-6)
    # rank 0 alone wrote the log: each step once, with the loss summed over both processes
    dist_log, single_log = _log(dist_dir), _log(single_dir)
    assert [r[0] for r in dist_log] == [str(s) for s in range(1, 9)]
    for a, b in zip(dist_log, single_log):
        assert a[:2] == b[:2] and a[3] == b[3]  # step, epoch, lr
        assert float(a[2]) == pytest.approx(float(b[2]), abs=1e-5)
    for checkpoint in ("c01", "c02", "c03", "c04"):
        a, b = _weights(dist_dir, checkpoint), _weights(single_dir, checkpoint)
        assert a.keys() == b.keys()
        for name in a:
            assert torch.allclose(a[name], b[name], rtol=0, atol=ATOL), (checkpoint, name)
        assert pl.read_parquet(dist_dir / "checkpoints" / checkpoint / "consumed.parquet").equals(
            pl.read_parquet(single_dir / "checkpoints" / checkpoint / "consumed.parquet"))
    # training moved the weights far more than the tolerance
    first = _weights(dist_dir, "c01")
    assert max((first[n] - a[n]).abs().max().item() for n in a) > 1000 * ATOL
    assert (dist_dir / "fingerprint.txt").read_text() == "fp (processes: 2)"
    assert not (dist_dir / "state").exists()


def test_resume_under_two_processes_equals_an_uninterrupted_run(runs):
    tmp, _, partial = runs
    assert partial["state_exists"] and not partial["manifest_exists"] and partial["log_rows"] == STOP
    ranks = partial["rng_ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])  # one stream per rank

    full_dir, resumed_dir = tmp / "full", tmp / "stopped"
    resumed = json.loads((resumed_dir / "manifest.json").read_text())
    full = json.loads((full_dir / "manifest.json").read_text())
    assert resumed["complete"] and resumed["resumed_at_steps"] == [4] and full["resumed_at_steps"] == []
    assert resumed["state_saves"] == 2 and full["state_saves"] == 0  # after steps 5 and 7 (6, 8: checkpoints)
    assert [c["train_loss"] for c in resumed["checkpoints"]] == [c["train_loss"] for c in full["checkpoints"]]
    columns = ["step", "epoch", "loss", "lr"]
    assert read_train_log(resumed_dir / "train_log.tsv").select(columns).equals(
        read_train_log(full_dir / "train_log.tsv").select(columns))
    assert "\n# resumed at step 4: " in (resumed_dir / "train_log.tsv").read_text()
    for checkpoint in ("c03", "c04"):  # written after the resume
        a, b = _weights(full_dir, checkpoint), _weights(resumed_dir, checkpoint)
        for name in a:
            assert torch.equal(a[name], b[name]), (checkpoint, name)
    # dropout is on: the uninterrupted runs with and without it differ, so the RNG states mattered
    nodrop = _weights(tmp / "dist", "c04")
    wte = "transformer.wte.weight"
    assert not torch.equal(nodrop[wte], _weights(full_dir, "c04")[wte])


def test_another_process_count_starts_over(runs, tmp_path):
    tmp, specs, _ = runs
    run_dir = tmp_path / "run"
    shutil.copytree(tmp / "dist", run_dir)
    manifest = run({**specs["dist"], "run_dir": str(run_dir)})  # the same spec, now one process
    assert manifest["processes"] == 1 and manifest["resumed_at_steps"] == []
    assert (run_dir / "fingerprint.txt").read_text() == "fp"
    assert manifest["steps_per_epoch"] == [7, 7]  # 28 examples, 4 per step


def test_launch_command_is_a_valid_accelerate_launch(tmp_path):
    from accelerate.commands.launch import launch_command_parser

    command = launch_command(tmp_path / "run.json", 4)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    args = launch_command_parser().parse_args(command[3:])
    assert args.multi_gpu and args.num_processes == 4 and args.num_machines == 1 and args.module
    assert args.main_process_port == 0 and args.mixed_precision == "no"
    assert args.training_script == "piimem.train_run"
    assert args.training_script_args == ["--config", str(tmp_path / "run.json")]


def test_run_description_errors_name_the_file_and_keys(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"base_model": "x", "tunning": "full"}))
    pattern = r"run\.json: missing key\(s\) \['models_dir', 'tuning'.*unknown key\(s\) \['tunning'\]"
    with pytest.raises(ValueError, match=pattern):
        load_spec(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"run\.json: expected a JSON object"):
        load_spec(path)


if __name__ == "__main__":  # the torchrun worker
    for spec_path in sys.argv[1:]:
        run(load_spec(Path(spec_path)))
