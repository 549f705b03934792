# The MIA scoring rules: `mia_reference` / `mia_trained_reference` score a sample with the base model (the
# Ref attack's reference); `membership_inference` scores it with every checkpoint of a run and attacks,
# on the members' original text and, for a defended run, on the text it trained on.
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl
import torch

from piimem.io import write_private_parquet, write_table
from piimem.metric_names import HEADLINE_ATTACK
from piimem.blind import BlindConfig
from piimem.metrics import roc_auc
from piimem.mia import attack_scores, blind_baseline, evaluate_attacks, sample_statistics, statistics_options
from piimem.models import load_base_model, workflow_model_source
from piimem.runs import checkpoint_models, stamp

torch.set_num_threads(snakemake.threads)
params, inputs = snakemake.params, snakemake.input
mia = params.mia
base, tokenizer = load_base_model(workflow_model_source(params.base_model, inputs.get("base_model")),
                                  models_dir=Path("results/models"))


def sample(path) -> pl.DataFrame:
    """index (the row in the member sample), member, text (null where a view leaves the message out)."""
    return pl.read_parquet(path).with_row_index("index").with_columns(pl.col("index").cast(pl.Int64))


def statistics(model, texts: pl.DataFrame) -> pl.DataFrame:
    return sample_statistics(model, tokenizer, texts, max_length=params.max_length, batch_size=mia["batch_size"],
                             device=params.device, **statistics_options(mia["attacks"], mia["min_k"]))


if "manifest" not in inputs.keys():
    write_private_parquet(statistics(base, sample(inputs.members)), snakemake.output.statistics)
else:
    views = {"original": (sample(inputs.members), pl.read_parquet(inputs.reference))}
    if "trained" in inputs.keys():
        views["trained"] = (sample(inputs.trained), pl.read_parquet(inputs.trained_reference))
    # The blind baseline reads no model: scored once per view, reported at every checkpoint beside the attacks.
    blind = {view: blind_baseline(texts, tokenizer, params.max_length,
                                  BlindConfig.from_config(mia["blind"], seed=mia["seed"]))
             for view, (texts, _) in views.items()} if mia["blind"]["enabled"] else {}
    for view, scores in blind.items():
        log.info("blind baseline, %s text: AUC %.3f without any model", view, roc_auc(
            scores["score"], scores.join(views[view][0], on="index")["member"]))
    for output, checkpoint, model in checkpoint_models(inputs.manifest, snakemake.output.results, base):
        tables, per_example = [], []
        for view, (texts, reference) in views.items():
            example_stats = statistics(model, texts)
            scores = attack_scores(example_stats, reference, mia["attacks"], mia["min_k"],
                                   reference=f"base model {params.base_model}")
            if view in blind:
                scores = pl.concat([scores, blind[view]])
            labels = texts.filter(pl.col("text").is_not_null()).select(
                "index", "member", *(["group"] if "group" in texts.columns else []))
            table = evaluate_attacks(scores, labels, bootstrap=mia["bootstrap"], seed=mia["seed"])
            tables.append(table.with_columns(member_text=pl.lit(view)))
            # Per-example scores (no text) for the ROC and loss-distribution figures.
            per_example.append(labels.join(example_stats.select("index", "n_tokens", "nll_mean"), on="index")
                               .join(scores.pivot("attack", index="index", values="score"), on="index")
                               .with_columns(member_text=pl.lit(view)).sort("index"))
            loss = table.filter(pl.col("attack") == HEADLINE_ATTACK)
            log.info("checkpoint %s, %s text: LOSS AUC %.3f", checkpoint["id"], view,
                     loss["auc"][0] if loss.height else float("nan"))
        write_table(pl.concat(per_example), output.with_suffix(".scores.parquet"))
        write_table(stamp(pl.concat(tables), checkpoint), output)
