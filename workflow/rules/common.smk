import os
import sys
from pathlib import Path

from snakemake.utils import validate

# Scripts import the library from src/ whether or not it is pip-installed (e.g. in --sdm conda envs).
_SRC = str(Path(workflow.basedir) / "src")
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, (_SRC, os.getenv("PYTHONPATH")))))
# Offline by default: no job may reach a model hub or the public-suffix list.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
# Jobs log to files, where Hugging Face's progress bars are noise; piimem logs its own progress lines.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

sys.path.insert(0, _SRC)
from piimem.config import check_config, checkpoint_ids, corpus_name, model_slug

validate(config, schema="../schemas/config.schema.yaml")
check_config(config)

CORPUS = corpus_name(config)
SYNTHETIC = config["corpus"]["source"] == "synthetic"
BASE_MODELS = {model_slug(name): name for name in config["base_models"]}
CHECKPOINTS = checkpoint_ids(config["train"]["epochs"], config["train"]["checkpoints_per_epoch"])
RUNS = expand(
    "{base}/{defense}-{tuning}-s{seed}",
    base=BASE_MODELS,
    defense=config["defenses"],
    tuning=config["tuning_methods"],
    seed=config["seeds"],
)


wildcard_constraints:
    defense="|".join(config["defenses"]),
    tuning="|".join(config["tuning_methods"]),
    base="|".join(BASE_MODELS),
    seed=r"\d+",


def maildir_root():
    """The maildir the parser reads: generated, downloaded or given."""
    source = config["corpus"]["source"]
    if source == "synthetic":
        return "resources/synthetic/maildir"
    if source == "cmu":
        return "resources/cmu/maildir"
    return config["corpus"]["path"]


def defense_inputs(wildcards):
    """Each defense reads the train split; dedup reads its own stage, the others the PII spans."""
    inputs = {
        "messages": "results/private/corpus/messages.parquet",
        "splits": "results/corpus/splits.parquet",
    }
    if wildcards.defense == "dedup":
        inputs["dedup"] = "results/private/dedup/train.parquet"
    elif wildcards.defense in ("rmft", "scrub"):
        inputs["spans"] = "results/private/pii/spans.parquet"
    return inputs


def base_model_inputs(wildcards):
    """The config.json of the base model's directory, where the model is a file on this machine.

    Built models are named by a file rather than a directory() output: Snakemake's marker file in
    directory outputs would be world-readable inside results/private.
    """
    name = BASE_MODELS[wildcards.base]
    if name == "tiny-gpt2":  # trained on the public split: its vocabulary and weights hold corpus text
        return {"base_model": "results/private/models/tiny-gpt2/config.json"}
    if name == "smollm2-135m":
        return {"base_model": "results/models/smollm2-135m/config.json"}
    if Path(name).is_dir():
        return {"base_model": f"{name}/config.json"}
    return {}  # a Hugging Face id, loaded from the local cache


def finetune_inputs(wildcards):
    return {
        "texts": f"results/private/defense/{wildcards.defense}/train.parquet",
        **base_model_inputs(wildcards),
    }


def defense_options(wildcards):
    """Only the keys a defense reads, so that editing another defense's options reruns nothing here."""
    if wildcards.defense == "rmft":
        options = dict(config["rmft"])
        options["epochs"] = config["train"]["epochs"] if options["redraw_per_epoch"] else 1
        return options
    if wildcards.defense == "scrub":
        return dict(config["scrub"])
    return {}


def all_outputs():
    outputs = [
        "results/corpus/summary.tsv",
        "results/corpus/splits.parquet",
        "results/pii/summary.tsv",
        "results/dedup/summary.tsv",
    ]
    if SYNTHETIC:
        outputs.append("results/pii/evaluation.tsv")
    outputs += expand("results/defense/{defense}/summary.tsv", defense=config["defenses"])
    outputs += expand("results/runs/{run}/utility/{checkpoint}.tsv", run=RUNS, checkpoint=CHECKPOINTS)
    outputs += expand("results/runs/{run}/mia/{checkpoint}.tsv", run=RUNS, checkpoint=CHECKPOINTS)
    return outputs
