import os
import re
import sys
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate

# Scripts import the library from src/ whether or not it is pip-installed (e.g. in --sdm conda envs).
_SRC = str(Path(workflow.basedir) / "src")
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, (_SRC, os.getenv("PYTHONPATH")))))
# Offline by default: no job may reach a model hub or the public-suffix list.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
# Jobs log to files, where Hugging Face's progress bars are noise; piimem logs its own progress lines.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

sys.path.insert(0, _SRC)
from piimem.io import make_private_dirs
from piimem.config import (
    CMU_MAILDIR,
    STOPS,
    ConfigError,
    check_config,
    missing_inputs,
    missing_inputs_block,
    missing_prompt_files,
    text_values,
    unknown_keys,
)
from piimem.plan import (
    Plan,
    audited,
    corpus_name,
    dedup_thresholds,
    dp_options,
    hf_mapped,
    kind_checkpoints,
    model_slug,
    outsiders,
    variant_options,
)
from piimem.defense import DEFENSE_KINDS
from piimem.metrics import tau_grid
from piimem.models import is_tiny_gpt2, tiny_gpt2_options, tiny_gpt2_parameters
from piimem.report.comparisons import item_files
from piimem.report.figures import FIGURE_GROUPS
from piimem.runs import RunId

# A misspelt key in one line with the nearest valid one (validate's own message for it is followed by the
# whole schema and config, thousands of lines), and a number given as text by --config, with the fix.
_BEFORE_VALIDATION = unknown_keys(config) + text_values(config)
if _BEFORE_VALIDATION:
    raise ConfigError("\n".join(_BEFORE_VALIDATION))
validate(config, schema="../schemas/config.schema.yaml")
check_config(config)
# Every input missing on this machine (mail, the CMU download, a data set, a base model, prompt files), in one
# block: a dry run or --unlock, on a login node where the models are not, plans on; a real run stops in
# onstart, before any job, on those it cannot run without (onstart runs for neither).
MISSING_INPUTS = missing_inputs(config)
if MISSING_INPUTS:
    logger.warning(missing_inputs_block(MISSING_INPUTS))


onstart:
    _stops = [missing.text for missing in MISSING_INPUTS if missing.then == STOPS]
    if _stops:
        raise ConfigError("\n".join(_stops))
    # Snakemake creates a job's output folders with the default mode just before the job runs: make the
    # planned ones under results/private 0700 first (and any left 0755 by an older version).
    make_private_dirs(
        (str(f) for job in workflow.dag.needrun_jobs() for f in job.output), tree="results/private"
    )


# Files several stages read, named once.
MESSAGES = "results/private/corpus/messages.parquet"
QUARANTINE = "results/corpus/quarantine.tsv"
SPLITS = "results/corpus/splits.parquet"
SPANS = "results/private/pii/spans.parquet"
# A run's directory under results/private/runs/, logs/ and benchmarks/ (piimem.runs.RunId's name), and its
# training manifest: every rule of a run matches these wildcards.
RUN = "{base}/{defense}-{tuning}-s{seed}"
MANIFEST = f"results/private/runs/{RUN}/manifest.json"
GROUND_TRUTH = "resources/synthetic/ground_truth.parquet"
# The audit canaries (piimem.audit) and their PII spans, read where each defense's training text is built.
AUDIT_CANARIES = "results/private/audit/canaries.parquet"
AUDIT_SPANS = "results/private/audit/spans.parquet"
AUDITED = audited(config)
METRICS = "results/metrics.parquet"
COMPARISONS = "results/comparisons.parquet"
# Who each run is (piimem.plan.Plan.identity): what the report reads instead of parsing run names.
RUN_IDENTITY = "results/runs.parquet"
CORPUS = corpus_name(config)
SYNTHETIC = config["corpus"]["source"] == "synthetic"
HF = config["corpus"]["source"] == "hf"
HF_MAPPED = hf_mapped(config)
# The tiny GPT-2 pre-trains on a synthetic world of outsiders rather than on the public split.
OUTSIDERS = outsiders(config)
BASE_MODELS = {model_slug(name): name for name in config["base_models"]}
TINY_GPT2S = [name for name in config["base_models"] if is_tiny_gpt2(name)]
# The size of each tiny GPT-2 (parameters), for the model-size claim; GPT-2's own sizes the report knows.
MODEL_SIZES = {
    model_slug(name): tiny_gpt2_parameters(tiny_gpt2_options(name, config["tiny_gpt2"])) for name in TINY_GPT2S
}
# What the config plans (variants, runs, checkpoints, result kinds, tables, figures), computed once.
PLAN = Plan.of(config)
CHECKPOINTS = list(PLAN.checkpoints)
TARGETED_CHECKPOINTS = kind_checkpoints(config, "targeted", CHECKPOINTS)
# GPUs a job asks the scheduler for: finetune spreads one run over train.gpus; every other model job
# (pre-training, scoring, attacks, generation) runs in one process on one GPU.
ONE_GPU = min(1, config["train"]["gpus"])
PROMPT_SETS = config["extraction"]["prompt_sets"]
# (prompt set, the same as a rule-name suffix, path) of each prompt file not on disk yet; a data set
# (a mapping) is no file: its own job loads it, or fails saying how to fetch it.
MISSING_PROMPT_FILES = [(name, re.sub(r"\W", "_", name), path) for name, path in missing_prompt_files(config)]
# defense variant -> its kind and options (piimem.plan.defense_variants)
DEFENSE_VARIANTS = PLAN.defenses
# defense variant -> its training text; each text with the defense that builds it
TEXT_OF = PLAN.texts
TEXTS = {text: DEFENSE_VARIANTS[variant]["defense"] for variant, text in TEXT_OF.items()}
TUNINGS = PLAN.tunings
RUNS = list(PLAN.runs)
TABLES, FIGURES = PLAN.tables, PLAN.figures
TAUS = list(tau_grid(config["report"]["tau_max"], config["report"]["tau_step"]))


def run_checkpoints(kind, suffix, private=False, checkpoints=None):
    """A run's file of result `kind` at each checkpoint (all of them by default), its wildcards left to the rule:
    results/runs/{RUN}/{kind}/{checkpoint}{suffix}, under results/private/ when it holds PII."""
    root = "results/private/runs" if private else "results/runs"
    run = RUN.replace("{", "{{").replace("}", "}}")
    return expand(f"{root}/{run}/{kind}/{{checkpoint}}{suffix}", checkpoint=checkpoints or CHECKPOINTS)


wildcard_constraints:
    defense="|".join(map(re.escape, DEFENSE_VARIANTS)),
    text="|".join(map(re.escape, TEXTS)),
    threshold=r"[0-9.]+",
    tuning="|".join(map(re.escape, TUNINGS)),
    base="|".join(BASE_MODELS),
    tiny="|".join(map(re.escape, TINY_GPT2S)) or "(?!)",
    seed=r"\d+",
    prompt_set="|".join(map(re.escape, PROMPT_SETS)) or "(?!)",


def local_dataset(path: str) -> dict:
    """A data set's local file or directory as a job input (so that editing it reruns the job); a hub id
    in the datasets cache is none."""
    return {"dataset": path} if Path(path).exists() else {}


def dataset_inputs(wildcards):
    return local_dataset(config["corpus"]["hf"]["path"])


def maildir_root():
    """The maildir the parser reads: generated, downloaded or given. A given one that is not there is no
    input, so that a dry run plans on (a real run stops in onstart, MISSING_INPUTS)."""
    source = config["corpus"]["source"]
    if source == "synthetic":
        return "resources/synthetic/maildir"
    if source == "cmu":
        return CMU_MAILDIR
    return config["corpus"]["path"] if Path(config["corpus"]["path"]).is_dir() else []


def defense_inputs(wildcards):
    """Each training text reads the train split and the files its defense names (piimem.defense: dedup its own
    stage's text, rmft and scrub the PII spans), and with an audit the audit canaries, unless its input holds
    them already (the deduplication stage added them)."""
    kind = DEFENSE_KINDS[TEXTS[wildcards.text]]
    inputs = {
        "messages": MESSAGES,
        "splits": SPLITS,
        **kind.inputs(DEFENSE_VARIANTS.get(wildcards.text, {"defense": kind.name})),
    }
    if kind.reads_spans:
        inputs["spans"] = SPANS
    if kind.canaries_upstream:
        return inputs
    return inputs | audit_inputs(wildcards, spans=kind.reads_spans)


def audit_inputs(wildcards, spans=False):
    """The audit canaries a training text adds (none without an audit), with their spans where it reads spans."""
    if not AUDITED:
        return {}
    return {"audit_canaries": AUDIT_CANARIES, **({"audit_spans": AUDIT_SPANS} if spans else {})}


def model_threads(wildcards):
    """CPU threads of a job that runs a model. The tiny GPT-2's matrices are too small to keep two threads
    busy: two one-thread jobs side by side do 1.15-1.25x the work of one two-thread job (bench/threads.py)."""
    return 1 if is_tiny_gpt2(base_model_name(wildcards)) else 2


def base_model_name(wildcards):
    """The base model a job of {base} loads (the `base_models` entry its slug stands for)."""
    return BASE_MODELS[wildcards.base]


def base_model_inputs(wildcards):
    """The config.json of the base model's directory, where the model is a file on this machine.

    Built models are named by a file rather than a directory() output: Snakemake's marker file in
    directory outputs would be world-readable inside results/private.
    """
    name = base_model_name(wildcards)
    if is_tiny_gpt2(name):  # pre-trained on corpus mail: its vocabulary and weights hold corpus text
        return {"base_model": f"results/private/models/{name}/config.json"}
    if name == "smollm2-135m":
        return {"base_model": "results/models/smollm2-135m/config.json"}
    if Path(name).is_dir():
        return {"base_model": f"{name}/config.json"}
    return {}  # a Hugging Face id, loaded from the local cache


def pretrain_inputs(wildcards):
    """The outsiders' mail (synthetic corpus.synthetic.pretrain) or the public split with, on the synthetic
    corpus, the ground truth, whose canaries pre-training skips; the validation split from the splits."""
    inputs = {
        "messages": MESSAGES,
        "splits": SPLITS,
    }
    if OUTSIDERS:
        inputs["outsiders"] = "results/private/corpus/outsiders.parquet"
    elif SYNTHETIC:
        inputs["truth"] = GROUND_TRUTH
    return inputs


def pretraining_pii_inputs(wildcards):
    """The PII of the outsiders' mail, where the tiny GPT-2 pre-trained on it (O_ft leaves it out)."""
    if OUTSIDERS and is_tiny_gpt2(base_model_name(wildcards)):
        return {"pretraining_pii": "results/private/corpus/outsiders.pii.parquet"}
    return {}


def finetune_inputs(wildcards):
    return {
        "texts": f"results/private/defense/{TEXT_OF[wildcards.defense]}/train.parquet",
        **base_model_inputs(wildcards),
    }


def prompt_dataset(wildcards) -> dict | None:
    """A prompt set given as a data set (extraction.prompt_files.<name>: corpus.hf's keys and a split); None
    for a file or a built-in set."""
    given = config["extraction"]["prompt_files"].get(wildcards.prompt_set)
    return given if isinstance(given, dict) else None


def extraction_prompt_inputs(wildcards):
    """A prompt set reads its split, the training PII spans (train-prefix), the user's file or data set."""
    inputs = base_model_inputs(wildcards)
    if wildcards.prompt_set in config["extraction"]["prompt_files"]:
        dataset = prompt_dataset(wildcards)
        inputs.update(local_dataset(dataset["path"]) if dataset else
                      {"file": config["extraction"]["prompt_files"][wildcards.prompt_set]})
        return inputs
    inputs.update(messages=MESSAGES, splits=SPLITS)
    if wildcards.prompt_set == "train-prefix":
        inputs["spans"] = SPANS
    return inputs


def extraction_inputs(wildcards):
    return {
        "prompts": expand(
            "results/private/extraction/{base}/prompts/{prompt_set}.parquet",
            base=wildcards.base,
            prompt_set=PROMPT_SETS,
        )
    }


# What the targets of the targeted attacks are built from, and what the attacks read.
TARGET_OPTIONS = {
    "inference": {k: v for k, v in config["extraction"]["inference"].items() if k != "enabled"},
    "association": {k: config["extraction"]["association"][k] for k in ("templates", "shots", "n_targets")},
    **{key: config["extraction"][key] for key in ("entity_types", "person_min_words", "seed")},
}
TARGETED_ATTACK_OPTIONS = {
    "inference": {"enabled": config["extraction"]["inference"]["enabled"]},
    "association": {k: config["extraction"]["association"][k] for k in ("enabled", "new_tokens")},
    "reconstruction": config["extraction"]["reconstruction"],
    **{key: config["extraction"][key] for key in ("batch_size", "seed")},
}


# What generation and the PII search read (prompt building has its own keys).
EXTRACTION_GENERATION = {
    key: config["extraction"][key]
    for key in ("new_tokens", "decoding", "temperature", "top_k", "batch_size", "seed", "entity_types",
                "person_min_words")
}


def text_options(wildcards):
    """Only the keys a training text's defense reads, so that editing another defense's options reruns nothing
    here (a text shared by a defense's variants reads none)."""
    return variant_options(config, wildcards.text) if wildcards.text in DEFENSE_VARIANTS else {}


def defense_options(wildcards):
    """The keys a defense variant reads (its non-members are rewritten as its training text was)."""
    return variant_options(config, wildcards.defense)


def dedup_options(wildcards):
    """What a variant's non-members' pass reads besides its options (its defense's `nonmember_config`): for a
    dedup variant the dedup section with its threshold (its non-members are deduplicated as its training text
    was); empty for other defenses."""
    variant = DEFENSE_VARIANTS[wildcards.defense]
    return DEFENSE_KINDS[variant["defense"]].nonmember_config(config, variant)


def trained_view_inputs(wildcards):
    """The sample, the defense's training text, and what the defense reads to rewrite the non-members."""
    inputs = {
        "members": f"results/private/mia/{wildcards.base}/members.parquet",
        "texts": f"results/private/defense/{TEXT_OF[wildcards.defense]}/train.parquet",
        "messages": MESSAGES,
        "splits": SPLITS,
    }
    if DEFENSE_KINDS[DEFENSE_VARIANTS[wildcards.defense]["defense"]].reads_spans:
        inputs["spans"] = SPANS
    return inputs


def membership_inference_inputs(wildcards):
    """The run, its sample and reference statistics; a run on rewritten text also the trained-text view of
    both."""
    run = RunId(wildcards.base, wildcards.defense, wildcards.tuning, int(wildcards.seed))
    inputs = {
        "manifest": f"results/private/runs/{run}/manifest.json",
        "members": f"results/private/mia/{wildcards.base}/members.parquet",
        "reference": f"results/private/mia/{wildcards.base}/reference.parquet",
    }
    if DEFENSE_KINDS[DEFENSE_VARIANTS[wildcards.defense]["defense"]].rewrites_text:
        trained = f"results/private/mia/{wildcards.base}/trained/{wildcards.defense}"
        inputs.update(trained=f"{trained}.parquet", trained_reference=f"{trained}.reference.parquet")
    return inputs


def run_results(wildcards=None):
    """Every per-checkpoint result file of every run, the input of metrics.parquet."""
    return PLAN.result_files()


def item_results(wildcards=None):
    """The per-item record beside every per-checkpoint result that has one (strings, messages, scores)."""
    return item_files(run_results())


def figure_inputs(wildcards):
    """metrics.parquet, comparisons.parquet, the member/non-member scores drawn per example at the last
    checkpoint of every run (the ROC curves and loss distributions of every run; of a sweep the figures draw
    the selected runs) and each base model's, the pre-trained panel."""
    bases = sorted({RunId.parse(run).base for run in RUNS})
    return {
        "metrics": METRICS,
        "comparisons": COMPARISONS,
        "scores": [f"results/runs/{run}/mia/{CHECKPOINTS[-1]}.scores.parquet" for run in RUNS],
        "reference": [f"results/private/mia/{base}/reference.parquet" for base in bases],
    }


def all_outputs():
    outputs = [
        "results/corpus/summary.tsv",
        SPLITS,
        "results/corpus/stats.tsv",
        "results/pii/summary.tsv",
    ]
    outputs += [f"results/dedup/t{threshold:g}/summary.tsv" for threshold in dedup_thresholds(config)]
    if SYNTHETIC:
        outputs.append("results/pii/evaluation.tsv")
    if OUTSIDERS:
        outputs.append("results/corpus/outsiders.tsv")
    outputs += expand("results/models/{tiny}.pretrain.tsv", tiny=TINY_GPT2S)
    outputs += expand("results/defense/{text}/summary.tsv", text=TEXTS)
    outputs += run_results()
    outputs.append(RUN_IDENTITY)
    outputs += expand("results/tables/{table}.{ext}", table=TABLES, ext=("md", "csv", "tex", "html"))
    outputs += ["results/summary.md", "results/summary.html", "results/summary.rst"]
    outputs += expand("results/figures/{figure}.{ext}", figure=FIGURES, ext=("png", "pdf"))
    return outputs
