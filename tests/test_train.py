"""Trainer: data order, blocks, checkpoints, consumed documents, resume, fingerprints (tiny GPT-2, CPU)."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import polars as pl
import pytest
import torch

from tiny_training import SMALL, epoch0_texts, tiny_model, training_docs
from piimem.models import train_tokenizer
from piimem.scoring import shifted_token_nll
from piimem.train import (
    TrainConfig,
    build_plans,
    checkpoint_schedule,
    checkpoint_steps,
    collate,
    document_order,
    read_train_log,
    resolve_precision,
    train,
)



@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(training_docs(300, seed=1), 300)




@pytest.fixture(scope="module")
def texts():
    # doc ids with gaps, as after deduplication
    return epoch0_texts(training_docs(30, seed=2), doc_ids=range(3, 93, 3))


@pytest.fixture(scope="module")
def full_run(tok, texts, tmp_path_factory):
    """One uninterrupted 2-epoch run, shared by several tests."""
    run_dir = tmp_path_factory.mktemp("full")
    model = tiny_model(tok)
    cfg = TrainConfig(**SMALL, epochs=2, checkpoints_per_epoch=2)
    manifest = train(model, tok, texts, cfg, run_dir, fingerprint="fp-1")
    return model, cfg, run_dir, manifest


def _log_rows(run_dir) -> list[list[str]]:
    lines = (run_dir / "train_log.tsv").read_text().splitlines()
    assert lines[0] == "step\tepoch\tloss\tlr\ttokens_per_s"
    return [line.split("\t") for line in lines[1:]]


# ------------------------------------------------------------------------------------------
# Schedule and configuration


def test_checkpoint_schedule_ids_and_epochs():
    schedule = checkpoint_schedule(3, 10)
    assert [c.id for c in schedule] == [f"c{k:02d}" for k in range(1, 31)]
    assert [c.epoch for c in schedule[:3]] == [0.1, 0.2, 0.3]
    assert schedule[9].epoch == 1.0 and schedule[-1].epoch == 3.0
    wide = checkpoint_schedule(12, 10)
    assert wide[0].id == "c001" and wide[-1].id == "c120"
    assert [c.id for c in checkpoint_schedule(1, 1)] == ["c01"]
    with pytest.raises(ValueError, match="train.checkpoints_per_epoch"):
        checkpoint_schedule(3, 0)


def test_checkpoint_steps_round_half_up_within_each_epoch():
    assert checkpoint_steps([10, 10, 10], 10) == list(range(1, 31))
    assert checkpoint_steps([7], 2) == [4, 7]  # 3.5 rounds up, not to even
    assert checkpoint_steps([4, 6], 2) == [2, 4, 7, 10]  # epochs of different length (RMFT redraws)
    # fewer steps than checkpoints: at least step 1, several share a step
    assert checkpoint_steps([3], 10) == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]


@pytest.mark.parametrize("changes, key", [
    ({"block_size": 0}, "train.block_size"),
    ({"packing": "sentences"}, "train.packing"),
    ({"lr": -1.0}, "train.lr"),
    ({"precision": "fp8"}, "train.precision"),
    ({"device": "tpu"}, "train.device"),
    ({"grad_accum": 1.5}, "train.grad_accum"),
    ({"compile": "yes"}, "train.compile"),
])
def test_config_errors_name_the_key(changes, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        TrainConfig(**changes)


def test_config_from_dict_rejects_unknown_keys():
    assert TrainConfig.from_dict({"lr": 1e-4, "epochs": 1}).lr == 1e-4
    with pytest.raises(ValueError, match=r"train\.learning_rate: unknown key"):
        TrainConfig.from_dict({"learning_rate": 1e-4})


def test_precision_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match=r"train\.precision: fp16 needs a CUDA GPU"):
        resolve_precision("fp16", cpu)


# ------------------------------------------------------------------------------------------
# Data order and examples


def test_document_order_does_not_depend_on_other_documents():
    everything = document_order(range(200), seed=42, epoch=0)
    subset = [d for d in range(200) if d % 3 != 0]  # e.g. what deduplication leaves
    kept = set(subset)
    assert document_order(subset, seed=42, epoch=0).tolist() == [d for d in everything.tolist() if d in kept]
    assert sorted(everything.tolist()) == list(range(200))
    assert everything.tolist() != list(range(200))
    assert document_order(range(200), seed=42, epoch=1).tolist() != everything.tolist()
    assert document_order(range(200), seed=43, epoch=0).tolist() != everything.tolist()
    assert document_order(range(200), seed=42, epoch=0).tolist() == everything.tolist()


def test_blocks_join_documents_with_eos_in_training_order(tok, texts):
    cfg = TrainConfig(**SMALL, epochs=2)
    plans = build_plans(tok, texts, cfg)
    text_of = dict(zip(texts["doc_id"].to_list(), texts["text"].to_list()))
    for plan in plans:
        expected_order = document_order(texts["doc_id"], seed=cfg.seed, epoch=plan.epoch).tolist()
        assert plan.doc_ids.tolist() == expected_order
        stream = []
        for d in expected_order:
            stream += tok(text_of[d], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        blocks = [plan.example_tokens(i) for i in range(plan.n_examples)]
        assert np.concatenate(blocks).tolist() == stream
        assert all(len(b) == cfg.block_size for b in blocks[:-1]) and 0 < len(blocks[-1]) <= cfg.block_size
        # every block names exactly the documents whose tokens it holds, in order
        seen = []
        for i in range(plan.n_examples):
            for d in plan.example_doc_ids(i).tolist():
                if not seen or seen[-1] != d:
                    seen.append(d)
        assert seen == expected_order
    assert plans[0].doc_ids.tolist() != plans[1].doc_ids.tolist()


def test_per_epoch_texts_are_used_in_their_epoch(tok):
    docs = training_docs(6, seed=3)
    redrawn = [d.upper() for d in docs]
    texts = pl.DataFrame({"epoch": [0] * 6 + [1] * 6, "doc_id": list(range(6)) * 2, "text": docs + redrawn})
    plans = build_plans(tok, texts, TrainConfig(**{**SMALL, "block_size": 64}, epochs=2, packing="messages"))
    for plan, source in zip(plans, (docs, redrawn)):
        for i in range(plan.n_examples):
            d = int(plan.example_doc_ids(i)[0])
            expected = (tok(source[d], add_special_tokens=False)["input_ids"] + [tok.eos_token_id])[:64]
            assert plan.example_tokens(i).tolist() == expected
    assert docs != redrawn


def test_texts_are_validated(tok):
    base = epoch0_texts(["aa bb.", "cc dd."])
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['text'\]"):
        build_plans(tok, base.drop("text"), TrainConfig(**SMALL, epochs=1))
    two_epochs = pl.concat([base, base.with_columns(pl.lit(2, dtype=pl.Int64).alias("epoch"))])
    with pytest.raises(ValueError, match=r"epochs \[0, 2\]; expected epoch 0 only .* \(train\.epochs = 3\)"):
        build_plans(tok, two_epochs, TrainConfig(**SMALL, epochs=3))
    shifted = base.with_columns(pl.lit(1, dtype=pl.Int64).alias("epoch"), pl.col("doc_id") + 5)
    other_docs = pl.concat([base, shifted])
    with pytest.raises(ValueError, match="epoch 1 cover different doc_ids"):
        build_plans(tok, other_docs, TrainConfig(**SMALL, epochs=2))
    with pytest.raises(ValueError, match="duplicate doc_id"):
        build_plans(tok, pl.concat([base, base]), TrainConfig(**SMALL, epochs=1))


def test_messages_packing_truncates_and_masks_padding(tok):
    docs = ["aa bb cc.", " ".join(["dd ee"] * 40), "ff."]
    cfg = TrainConfig(**{**SMALL, "block_size": 16}, epochs=1, packing="messages")
    plan = build_plans(tok, epoch0_texts(docs), cfg)[0]
    assert plan.n_examples == 3
    examples = [plan.example_tokens(i) for i in range(3)]
    assert max(len(x) for x in examples) == 16  # the long message is cut to block_size
    assert all(x[-1] == tok.eos_token_id for x in examples if len(x) < 16)
    ids, mask = collate(examples, pad_id=tok.pad_token_id)
    assert ids.shape == (3, 16)
    assert mask.sum(axis=1).tolist() == [len(x) for x in examples]
    assert all((ids[r, len(x):] == tok.pad_token_id).all() for r, x in enumerate(examples))

    # The batched, padded loss equals the sum of the losses of each message alone: padding is masked.
    model = tiny_model(tok).eval()
    with torch.no_grad():
        t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
        nll, valid = shifted_token_nll(model(input_ids=t_ids, attention_mask=t_mask).logits, t_ids, t_mask)
        alone = 0.0
        for x in examples:
            x_ids = torch.from_numpy(x.astype(np.int64))[None]
            logits = model(input_ids=x_ids).logits
            alone += shifted_token_nll(logits, x_ids, torch.ones_like(x_ids))[0].sum().item()
    assert valid.sum().item() == sum(len(x) - 1 for x in examples)
    assert nll.sum().item() == pytest.approx(alone, rel=1e-5)
    assert nll[~valid].abs().sum().item() == 0.0


# ------------------------------------------------------------------------------------------
# Training runs


def test_training_lowers_the_loss_and_writes_checkpoints(full_run, tok):
    from transformers import AutoModelForCausalLM

    model, cfg, run_dir, manifest = full_run
    assert manifest["complete"] is True
    assert [c["id"] for c in manifest["checkpoints"]] == ["c01", "c02", "c03", "c04"]
    assert [c["epoch"] for c in manifest["checkpoints"]] == [0.5, 1.0, 1.5, 2.0]
    assert [c["step"] for c in manifest["checkpoints"]] == checkpoint_steps(manifest["steps_per_epoch"], 2)
    assert manifest["steps"] == sum(manifest["steps_per_epoch"]) == manifest["checkpoints"][-1]["step"]
    assert manifest["steps_per_epoch"] == [-(-n // cfg.batch_size) for n in manifest["examples_per_epoch"]]
    assert manifest["documents"] == 30 and manifest["precision"] == "fp32" and manifest["device"] == "cpu"
    assert manifest["tokens"] > 0 and manifest["resumed_at_steps"] == []
    assert json.loads((run_dir / "manifest.json").read_text()) == manifest
    assert not (run_dir / "state").exists()  # optimizer state is dropped once the run is complete

    rows = _log_rows(run_dir)
    assert [int(r[0]) for r in rows] == list(range(1, manifest["steps"] + 1))
    first_losses = [float(r[2]) for r in rows[:3]]
    losses = [c["train_loss"] for c in manifest["checkpoints"]]
    assert losses[-1] < 0.8 * min(first_losses)
    assert losses[-1] < losses[0]

    last = run_dir / manifest["checkpoints"][-1]["path"]
    assert (last / "tokenizer.json").is_file()
    assert json.loads((last / "checkpoint.json").read_text())["step"] == manifest["steps"]
    reloaded = AutoModelForCausalLM.from_pretrained(last)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name
    first = AutoModelForCausalLM.from_pretrained(run_dir / "checkpoints" / "c01")
    assert not torch.equal(first.state_dict()["lm_head.weight"], model.state_dict()["lm_head.weight"])


def test_complete_run_is_not_retrained(full_run, tok, texts):
    model, cfg, run_dir, manifest = full_run
    before = (run_dir / "train_log.tsv").read_text()
    again = train(tiny_model(tok), tok, texts, cfg, run_dir, fingerprint="fp-1")
    assert again == manifest
    assert (run_dir / "train_log.tsv").read_text() == before


def test_consumed_documents_grow_and_match_the_blocks_seen(full_run, tok, texts):
    _, cfg, run_dir, manifest = full_run
    plans = build_plans(tok, texts, cfg)
    per_step = cfg.batch_size * cfg.grad_accum
    step_of_doc: dict[int, int] = {}
    step = 0
    for plan in plans:
        for i in range(plan.n_examples):
            for d in plan.example_doc_ids(i).tolist():
                step_of_doc.setdefault(d, step + i // per_step + 1)
        step += -(-plan.n_examples // per_step)
    previous: set[int] = set()
    sizes = []
    for checkpoint in manifest["checkpoints"]:
        consumed = pl.read_parquet(run_dir / checkpoint["path"] / "consumed.parquet")
        assert consumed.columns == ["doc_id", "first_step"]
        ids = set(consumed["doc_id"].to_list())
        assert ids == {d for d, s in step_of_doc.items() if s <= checkpoint["step"]}
        assert dict(zip(consumed["doc_id"], consumed["first_step"])) == {d: step_of_doc[d] for d in ids}
        assert previous <= ids
        previous = ids
        sizes.append(len(ids))
    assert 0 < sizes[0] < 30 and sizes[1] == 30 and sizes[-1] == 30


@pytest.mark.parametrize("where", ["at_checkpoint", "between_checkpoints"])
def test_resume_after_a_stop_equals_an_uninterrupted_run(full_run, tok, texts, tmp_path, where):
    full_model, cfg, full_dir, manifest = full_run
    steps = [c["step"] for c in manifest["checkpoints"]]
    stop, resume_from = (steps[0], steps[0]) if where == "at_checkpoint" else (steps[1] + 2, steps[1])
    run_dir = tmp_path / "run"

    partial = train(tiny_model(tok), tok, texts, cfg, run_dir, fingerprint="fp-1", stop_after_step=stop)
    assert partial["complete"] is False and partial["steps"] == stop
    assert (run_dir / "state" / "state.json").is_file() and not (run_dir / "manifest.json").exists()
    assert len(_log_rows(run_dir)) == stop

    torch.manual_seed(999)  # a new process would start with other generator states
    random.seed(999)
    resumed_model = tiny_model(tok)
    resumed = train(resumed_model, tok, texts, cfg, run_dir, fingerprint="fp-1")
    assert resumed["complete"] is True and resumed["resumed_at_steps"] == [resume_from]
    for (name, a), (_, b) in zip(full_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), name
    # the interrupted attempt's rows stay, after them a marker; the final history has the same steps with
    # the same losses as the uninterrupted run, each once
    every_row = read_train_log(run_dir / "train_log.tsv", latest=False)
    assert every_row.filter(pl.col("attempt") == 1)["step"].to_list() == list(range(1, stop + 1))
    assert every_row.filter(pl.col("attempt") == 2)["step"].min() == resume_from + 1
    assert f"\n# resumed at step {resume_from}: " in (run_dir / "train_log.tsv").read_text()
    columns = ["step", "epoch", "loss", "lr"]
    assert read_train_log(run_dir / "train_log.tsv").select(columns).equals(
        read_train_log(full_dir / "train_log.tsv").select(columns))
    assert [c["train_loss"] for c in resumed["checkpoints"]] == \
        [c["train_loss"] for c in manifest["checkpoints"]]
    for checkpoint in manifest["checkpoints"]:
        a = pl.read_parquet(full_dir / checkpoint["path"] / "consumed.parquet")
        assert a.equals(pl.read_parquet(run_dir / checkpoint["path"] / "consumed.parquet"))


def test_a_changed_fingerprint_starts_over(full_run, tok, texts, tmp_path):
    _, cfg, full_dir, manifest = full_run
    run_dir = tmp_path / "run"
    first_stop = manifest["checkpoints"][0]["step"]
    train(tiny_model(tok), tok, texts, cfg, run_dir, fingerprint="old", stop_after_step=first_stop)
    assert (run_dir / "state").is_dir()
    (run_dir / "notes.txt").write_text("not the trainer's")  # foreign files are left alone

    model = tiny_model(tok)
    result = train(model, tok, texts, cfg, run_dir, fingerprint="new")
    assert result["resumed_at_steps"] == [] and result["fingerprint"] == "new"
    assert (run_dir / "fingerprint.txt").read_text() == "new"
    assert (run_dir / "notes.txt").read_text() == "not the trainer's"
    assert [r[:4] for r in _log_rows(run_dir)] == [r[:4] for r in _log_rows(full_dir)]


def test_messages_packing_trains(tok, texts, tmp_path):
    cfg = TrainConfig(**SMALL, epochs=1, checkpoints_per_epoch=1, packing="messages")
    manifest = train(tiny_model(tok), tok, texts, cfg, tmp_path / "run", fingerprint="m")
    assert manifest["examples_per_epoch"] == [30]
    assert manifest["steps"] == 8  # ceil(30 / 4)
    # messages are padded, so fewer tokens than steps x batch x block
    assert manifest["tokens"] < 8 * 4 * 32


def test_prompt_tuning_model_trains_only_its_prompt(tok, texts, tmp_path):
    from peft import PromptTuningConfig, get_peft_model

    base = tiny_model(tok)
    base_weights = copy.deepcopy(base.state_dict())
    model = get_peft_model(base, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    prompt_before = model.prompt_encoder["default"].embedding.weight.detach().clone()
    cfg = TrainConfig(**SMALL, epochs=1, checkpoints_per_epoch=1)
    manifest = train(model, tok, texts, cfg, tmp_path / "run", fingerprint="p")
    assert manifest["trainable_parameters"] == 4 * 32
    assert not torch.equal(model.prompt_encoder["default"].embedding.weight, prompt_before)
    for name, tensor in model.get_base_model().state_dict().items():
        assert torch.equal(tensor, base_weights[name]), name
    assert (tmp_path / "run" / "checkpoints" / "c01" / "adapter_model.safetensors").is_file()


def test_block_size_must_fit_the_model(tok, texts, tmp_path):
    cfg = TrainConfig(**{**SMALL, "block_size": 128}, epochs=1)
    with pytest.raises(ValueError, match=r"train\.block_size: 128 exceeds the model's 64 positions"):
        train(tiny_model(tok), tok, texts, cfg, tmp_path / "run", fingerprint="b")
