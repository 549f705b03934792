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

sys.path.insert(0, _SRC)
from piimem.config import check_config, corpus_name

validate(config, schema="../schemas/config.schema.yaml")
check_config(config)

CORPUS = corpus_name(config)
SYNTHETIC = config["corpus"]["source"] == "synthetic"


wildcard_constraints:
    defense="|".join(config["defenses"]),


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
    return outputs
