"""The one loop over a run's checkpoints (piimem.evaluate), the measurements it runs (utility, membership
inference) and the fine-tuning job's learning rate and run description (piimem.train_run); tiny GPT-2, CPU."""

from __future__ import annotations

import math
import os

import polars as pl
import pytest
import torch
from tiny_training import SMALL, epoch0_texts, tiny_model, training_docs

from piimem.evaluate import evaluate_checkpoints, write_tables
from piimem.models import train_tokenizer
from piimem.runs import read_checkpoints, stamp


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(training_docs(300, seed=1), 300)


@pytest.fixture(scope="module")
def run(tok, tmp_path_factory):
    """A finished 2-epoch run of a tiny GPT-2 with 2 checkpoints per epoch: (run dir, manifest path)."""
    from piimem.train import TrainConfig, train

    run_dir = tmp_path_factory.mktemp("run")
    train(tiny_model(tok), tok, epoch0_texts(training_docs(30, seed=2)), TrainConfig(**SMALL, epochs=2,
          checkpoints_per_epoch=2), run_dir, fingerprint="loop")
    return run_dir, run_dir / "manifest.json"


def mean_loss(model, tok, text: str) -> float:
    ids = tok(text, return_tensors="pt")["input_ids"][:, :32]  # within the tiny model's 64 positions
    with torch.no_grad():
        return model(input_ids=ids, labels=ids).loss.item()


def test_the_loop_measures_every_checkpoint_in_order_and_writes_its_stamped_files(run, tok, tmp_path):
    from transformers import AutoModelForCausalLM

    _, manifest = run
    checkpoints = read_checkpoints(manifest)
    assert list(checkpoints) == ["c01", "c02", "c03", "c04"]
    base = tiny_model(tok)
    before = {name: tensor.clone() for name, tensor in base.state_dict().items()}
    text, visited = training_docs(1, seed=9)[0], []

    def measure(model, checkpoint):
        visited.append(checkpoint["id"])
        loss = pl.DataFrame({"metric": ["loss"], "value": [mean_loss(model, tok, text)]})
        return {"results": stamp(loss, checkpoint), "records": loss}

    outputs = {"results": [tmp_path / f"{c}.tsv" for c in checkpoints],
               "records": [tmp_path / f"{c}.records.parquet" for c in checkpoints]}
    measured = evaluate_checkpoints(manifest, outputs, base, measure)
    assert visited == list(checkpoints) and len(measured) == 4
    for checkpoint_id, checkpoint in checkpoints.items():
        written = pl.read_csv(tmp_path / f"{checkpoint_id}.tsv", separator="\t")
        assert written.columns == ["metric", "value", "checkpoint", "epoch"]
        assert written.row(0)[2:] == (checkpoint_id, checkpoint["epoch"])
        # The model measured is the checkpoint's own, loaded here independently of the loop.
        alone = AutoModelForCausalLM.from_pretrained(checkpoint["dir"]).eval()
        assert written["value"][0] == pytest.approx(mean_loss(alone, tok, text), rel=1e-5)
        assert pl.read_parquet(tmp_path / f"{checkpoint_id}.records.parquet").equals(written.select("metric", "value"))
    losses = [pl.read_csv(tmp_path / f"{c}.tsv", separator="\t")["value"][0] for c in checkpoints]
    assert losses[-1] < mean_loss(base, tok, text) and len(set(losses)) == 4
    assert all(torch.equal(tensor, before[name]) for name, tensor in base.state_dict().items())


def test_the_loop_follows_the_outputs_order_and_refuses_outputs_that_disagree(run, tok, tmp_path):
    _, manifest = run
    base, visited = tiny_model(tok), []

    def measure(model, checkpoint):
        visited.append(checkpoint["id"])
        return {"results": stamp(pl.DataFrame({"n": [1]}), checkpoint)}

    evaluate_checkpoints(manifest, {"results": [tmp_path / "c03.tsv", tmp_path / "c01.tsv"]}, base, measure)
    assert visited == ["c03", "c01"] and not (tmp_path / "c02.tsv").exists()
    with pytest.raises(ValueError, match=r"output 'records' .* does not name the checkpoints of output 'results'"):
        evaluate_checkpoints(manifest, {"results": [tmp_path / "c01.tsv", tmp_path / "c02.tsv"],
                                        "records": [tmp_path / "c02.r.parquet", tmp_path / "c01.r.parquet"]},
                             base, measure)
    with pytest.raises(ValueError, match=r"gives tables \['results'\] but the rule declares outputs "
                                         r"\['records', 'results'\]"):
        evaluate_checkpoints(manifest, {"results": [tmp_path / "c01.tsv"], "records": [tmp_path / "c01.r.parquet"]},
                             base, measure)
    with pytest.raises(ValueError, match=r"checkpoint 'c09' is not in .*manifest.json"):
        evaluate_checkpoints(manifest, {"results": [tmp_path / "c09.tsv"]}, base, measure)


def test_a_table_under_a_private_folder_is_written_private(tmp_path):
    table = pl.DataFrame({"value": ["made-up"]})
    files = {"found": tmp_path / "results/private/x/found.parquet", "counts": tmp_path / "results/x/counts.tsv"}
    write_tables({"found": table, "counts": table}, files)
    assert os.stat(files["found"]).st_mode & 0o777 == 0o600
    assert os.stat(files["found"].parent).st_mode & 0o777 == 0o700
    assert pl.read_parquet(files["found"]).equals(table) and files["counts"].read_text() == "value\nmade-up\n"


# ------------------------------------------------------------------------------------------
# Measurements: the base model measured as a checkpoint must equal its own baseline


def corpus_files(tmp_path) -> tuple:
    docs = training_docs(24, seed=5)
    messages = pl.DataFrame({"doc_id": list(range(24)), "text": docs})
    splits = pl.DataFrame({"doc_id": list(range(24)), "split": ["train"] * 8 + ["test"] * 10 + ["validation"] * 6})
    messages.write_parquet(tmp_path / "messages.parquet")
    splits.write_parquet(tmp_path / "splits.parquet")
    return tmp_path / "messages.parquet", tmp_path / "splits.parquet"


def test_utility_of_the_base_model_equals_its_baseline_and_counts_as_not_learnt(tok, tmp_path, caplog):
    from piimem.utility import Utility

    messages, splits = corpus_files(tmp_path)
    base = tiny_model(tok)
    utility = Utility.from_files(base, tok, messages=messages, splits=splits, options={"max_examples": 8,
                                 "batch_size": 4}, seed=3, max_length=32, device="cpu")
    assert utility.test.height == 8 and utility.test["doc_id"].is_sorted()  # a sample of max_examples
    assert utility.validation.height == 6
    tables = utility.tables(base, {"id": "c00", "epoch": 0.0, "train_loss": None, "dp_epsilon": 3.5})
    values = dict(tables["utility"].select("metric", "value").rows())
    assert tables["utility"].columns == ["checkpoint", "epoch", "metric", "value"]
    assert values["ppl_mean"] == values["ppl_base"] and values["val_ppl_mean"] == values["val_ppl_base"]
    assert math.isnan(values["train_loss"]) and values["dp_epsilon"] == 3.5 and values["n_examples"] == 8
    messages_table = tables["messages"]
    assert messages_table.columns == ["doc_id", "n_tokens", "nll_sum", "base_nll_sum", "checkpoint", "epoch"]
    assert messages_table["nll_sum"].equals(messages_table["base_nll_sum"], check_names=False)
    assert utility.check_learnt(tables) is False and "has not learnt the training data" in caplog.text
    no_dp = utility.tables(base, {"id": "c00", "epoch": 0.0, "train_loss": 1.5})
    assert "dp_epsilon" not in no_dp["utility"]["metric"].to_list()


def test_membership_inference_on_the_base_model_gives_the_reference_attack_nothing(run, tok, tmp_path):
    from piimem.mia import MembershipInference, member_sample, scoring_statistics
    from piimem.schema import default

    _, manifest = run
    base = tiny_model(tok)
    sample = pl.DataFrame({"doc_id": list(range(12)), "text": training_docs(12, seed=6),
                           "member": [i % 2 == 0 for i in range(12)]})
    sample.write_parquet(tmp_path / "members.parquet")
    mia = {key: default(f"mia.{key}") for key in ("attacks", "min_k", "batch_size", "seed")}
    mia.update(bootstrap=20, blind={"enabled": False})
    # mia_reference: the base model's statistics of the sample, written private.
    reference = tmp_path / "private" / "reference.parquet"
    write_tables({"statistics": scoring_statistics(base, tok, member_sample(tmp_path / "members.parquet"), mia,
                                                   max_length=32, device="cpu")}, {"statistics": reference})
    assert os.stat(reference).st_mode & 0o777 == 0o600
    attacks = MembershipInference.from_files(tok, members=tmp_path / "members.parquet", reference=reference,
                                             mia=mia, base_model="tiny", max_length=32, device="cpu")
    on_base = attacks.tables(base, {"id": "c00", "epoch": 0.0})
    assert on_base["scores"]["ref"].abs().max() == 0  # target = reference: the Ref score is 0 for every text
    assert on_base["scores"].height == 12 and set(on_base["scores"]["member_text"]) == {"original"}
    assert on_base["results"].filter(pl.col("attack") == "ref")["auc"][0] == 0.5
    outputs = {"results": [tmp_path / "c02.tsv", tmp_path / "c04.tsv"],
               "scores": [tmp_path / "c02.scores.parquet", tmp_path / "c04.scores.parquet"]}
    evaluate_checkpoints(manifest, outputs, base, attacks.tables)
    results = pl.read_csv(tmp_path / "c04.tsv", separator="\t")
    assert results.height == len(mia["attacks"]) and {"loss", "ref", "min_k_20"} <= set(results["attack"])
    assert set(results["checkpoint"]) == {"c04"}
    assert (results["n_members"] == 6).all() and (results["n_nonmembers"] == 6).all()
    assert pl.read_parquet(tmp_path / "c04.scores.parquet")["ref"].abs().max() > 0


# ------------------------------------------------------------------------------------------
# The fine-tuning job: learning rate and run description


def test_the_learning_rate_is_the_dp_variants_then_the_methods_then_train_lr():
    from piimem.train_run import run_learning_rate

    dp = {"epsilon": 8.0, "batch_size": 16, "lr": 1e-3}
    assert run_learning_rate("lora", {"lr": 5e-4}, 2e-5, dp) == 1e-3
    assert run_learning_rate("lora", {"lr": 5e-4}, 2e-5, {**dp, "lr": None}) == 5e-4
    assert run_learning_rate("lora", {"lr": 5e-4}, 2e-5, None) == 5e-4
    assert run_learning_rate("full", {}, 2e-5, {**dp, "lr": None}) == 2e-5
    assert run_learning_rate("full", None, "2e-5", None) == 2e-5  # numbers as the config may give them


def test_the_run_description_takes_the_dp_learning_rate_out_of_the_dp_settings(tmp_path):
    from piimem.io import fingerprint
    from piimem.train_run import workflow_spec

    texts = tmp_path / "train.parquet"
    texts.write_bytes(b"texts")
    dp = {"delta": 1e-5, "max_grad_norm": 1.0, "accountant": "prv", "epsilon": 8.0, "batch_size": 16, "lr": 1e-3}
    common = {"base_model": "tiny-gpt2", "source": "results/models/tiny-gpt2",
              "tuning": {"tuning": "full", "options": {}}, "train": {"lr": 2e-5, "epochs": 3, "gpus": 0}, "seed": "42",
              "texts": str(texts), "run_dir": tmp_path / "run", "inputs": [str(texts)], "threads": 2,
              "state_every": {"steps": 100}}
    spec = workflow_spec(dp=dp, **common)
    assert spec["train"] == {"lr": 1e-3, "epochs": 3, "seed": 42}  # gpus says how the job starts, not what
    assert spec["dp"] == {k: v for k, v in dp.items() if k != "lr"} and "lr" in dp  # the caller's dict is kept
    assert spec["fingerprint"] == fingerprint({"base_model": "tiny-gpt2", "tuning": "full", "options": {"lr": None},
                                               "train": spec["train"], "dp": spec["dp"]}, [texts])
    assert spec["run_dir"] == str(tmp_path / "run") and spec["models_dir"] == "results/models"
    plain = workflow_spec(dp={}, **common)
    assert plain["dp"] is None and plain["train"]["lr"] == 2e-5 and plain["fingerprint"] != spec["fingerprint"]
