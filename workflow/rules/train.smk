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
        manifest="results/private/runs/{base}/{defense}-{tuning}-s{seed}/manifest.json",
    params:
        base_model=lambda wildcards: BASE_MODELS[wildcards.base],
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
        "logs/train/{base}/{defense}-{tuning}-s{seed}.log",
    benchmark:
        "benchmarks/train/{base}/{defense}-{tuning}-s{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/finetune.py"


rule perplexity:
    input:
        unpack(base_model_inputs),
        manifest="results/private/runs/{base}/{defense}-{tuning}-s{seed}/manifest.json",
        messages=MESSAGES,
        splits=SPLITS,
    output:
        # One job scores every checkpoint of a run (the base model loads once); each checkpoint's file is
        # still a target of its own, named from the config before training starts.
        utility=expand(
            "results/runs/{{base}}/{{defense}}-{{tuning}}-s{{seed}}/utility/{checkpoint}.tsv",
            checkpoint=CHECKPOINTS,
        ),
        # Per test message (doc_id, scored tokens, NLL sums of the checkpoint and of the base model; no
        # text): for the report's paired intervals.
        messages=expand(
            "results/runs/{{base}}/{{defense}}-{{tuning}}-s{{seed}}/utility/{checkpoint}.messages.parquet",
            checkpoint=CHECKPOINTS,
        ),
    params:
        base_model=lambda wildcards: BASE_MODELS[wildcards.base],
        utility=config["utility"],
        max_length=config["train"]["block_size"],
        device=config["train"]["device"],
        seed=config["corpus"]["split"]["seed"],
    threads: model_threads
    resources:
        gpu=ONE_GPU,
    log:
        "logs/utility/{base}/{defense}-{tuning}-s{seed}.log",
    benchmark:
        "benchmarks/utility/{base}/{defense}-{tuning}-s{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/perplexity.py"
