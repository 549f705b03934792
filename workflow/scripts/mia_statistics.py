# Both MIA rules: `mia_reference` scores the members and non-members with the base model (the Ref
# attack's reference); `membership_inference` scores them with every checkpoint of a run and attacks.
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl
import torch

from piimem.io import write_private_parquet, write_table
from piimem.mia import attack_scores, evaluate_attacks
from piimem.models import load_base_model, workflow_model_source
from piimem.scoring import example_statistics
from piimem.train import read_checkpoints
from piimem.tuning import load_checkpoint

torch.set_num_threads(snakemake.threads)
params, inputs = snakemake.params, snakemake.input
mia = params.mia
source = workflow_model_source(params.base_model, inputs.get("base_model"))
base, tokenizer = load_base_model(source, models_dir=Path("results/models"))
members = pl.read_parquet(inputs.members).with_row_index("index").with_columns(pl.col("index").cast(pl.Int64))


def statistics(model) -> pl.DataFrame:
    return example_statistics(model, tokenizer, members["text"].to_list(), max_length=params.max_length,
                              batch_size=mia["batch_size"], device=params.device, min_k_fractions=(mia["min_k"],),
                              lowercase="lowercase" in mia["attacks"])


if "reference" not in inputs.keys():
    write_private_parquet(statistics(base), snakemake.output.statistics)
else:
    reference = pl.read_parquet(inputs.reference)
    checkpoints = read_checkpoints(inputs.manifest)
    for output, scores_path in zip(snakemake.output.results, snakemake.output.scores):
        checkpoint = checkpoints[Path(output).stem]
        model = load_checkpoint(base, checkpoint["dir"])
        example_stats = statistics(model)
        scores = attack_scores(example_stats, reference, mia["attacks"], mia["min_k"],
                               reference=f"base model {params.base_model}")
        # Per-example scores (no text) for the ROC and loss-distribution figures.
        write_table(members.select("index", "member")
                    .join(example_stats.select("index", "n_tokens", "nll_mean"), on="index")
                    .join(scores.pivot("attack", index="index", values="score"), on="index").sort("index"),
                    scores_path)
        table = evaluate_attacks(scores, members.select("index", "member"), bootstrap=mia["bootstrap"],
                                 seed=mia["seed"])
        write_table(table.with_columns(checkpoint=pl.lit(checkpoint["id"]), epoch=pl.lit(checkpoint["epoch"])), output)
        loss = table.filter(pl.col("attack") == "loss")
        log.info("checkpoint %s: LOSS AUC %.3f", checkpoint["id"], loss["auc"][0] if loss.height else float("nan"))
