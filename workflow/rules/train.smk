rule pretrain_tiny_gpt2:
    input:
        unpack(pretrain_inputs),
    output:
        model="results/private/models/{tiny}/config.json",
        # validation perplexity per epoch (numbers only); the base model is the epoch of the lowest
        curve="results/models/{tiny}.pretrain.tsv",
    params:
        options=lambda wildcards: tiny_gpt2_options(wildcards.tiny, config["tiny_gpt2"]),
        work_dir="results/private/pretrain-state/{tiny}",
        block_size=config["train"]["block_size"],
        device=config["train"]["device"],
    threads: 2
    resources:
        gpu=ONE_GPU,
    log:
        "logs/train/pretrain_{tiny}.log",
    benchmark:
        "benchmarks/train/pretrain_{tiny}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/pretrain_tiny_gpt2.py"


rule export_smollm2:
    output:
        model="results/models/smollm2-135m/config.json",
    log:
        "logs/train/export_smollm2.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/export_smollm2.py"


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        manifest=MANIFEST,
    params:
        base_model=base_model_name,
        # state_every changes no result: the script reads it from the config, so editing it reruns nothing.
        train={key: value for key, value in config["train"].items() if key != "state_every"},
        tuning=lambda wildcards: {key: TUNINGS[wildcards.tuning][key] for key in ("tuning", "options")},
        # DP-SGD's settings for a dp variant (piimem.plan.dp_options), None for every other defense.
        dp=lambda wildcards: dp_options(config, wildcards.defense),
    # Longest jobs first (docs/performance.md): training, then the targeted attacks and extraction, so the
    # short scoring jobs fill the end instead of one long attack running alone.
    priority: 30
    threads: model_threads
    resources:
        gpu=config["train"]["gpus"],
    log:
        f"logs/train/{RUN}.log",
    benchmark:
        f"benchmarks/train/{RUN}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/finetune.py"


rule perplexity:
    input:
        unpack(base_model_inputs),
        manifest=MANIFEST,
        messages=MESSAGES,
        splits=SPLITS,
    output:
        # One job scores every checkpoint of a run (the base model loads once); each checkpoint's file is
        # still a target of its own, named from the config before training starts.
        utility=run_checkpoints("utility", ".tsv"),
        # Per test message (doc_id, scored tokens, NLL sums of the checkpoint and of the base model; no
        # text): for the report's paired intervals.
        messages=run_checkpoints("utility", ".messages.parquet"),
    params:
        base_model=base_model_name,
        utility=config["utility"],
        max_length=config["train"]["block_size"],
        device=config["train"]["device"],
        seed=config["corpus"]["split"]["seed"],
    threads: model_threads
    resources:
        gpu=ONE_GPU,
    log:
        f"logs/utility/{RUN}.log",
    benchmark:
        f"benchmarks/utility/{RUN}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/perplexity.py"
