rule mia_members:
    input:
        messages="results/private/corpus/messages.parquet",
        splits="results/corpus/splits.parquet",
    output:
        members="results/private/mia/members.parquet",
    params:
        n=config["mia"]["n"],
        length_bins=config["mia"]["length_bins"],
        seed=config["mia"]["seed"],
    log:
        "logs/mia/members.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/mia_members.py"


rule mia_reference:
    input:
        unpack(base_model_inputs),
        members="results/private/mia/members.parquet",
    output:
        statistics="results/private/mia/{base}/reference.parquet",
    params:
        base_model=lambda wildcards: BASE_MODELS[wildcards.base],
        # Only what the scoring pass reads: editing the bootstrap or the seed re-scores no model.
        mia={key: config["mia"][key] for key in ("attacks", "min_k", "batch_size")},
        max_length=config["train"]["block_size"],
        device=config["train"]["device"],
    threads: 2
    resources:
        gpu=config["train"]["gpus"],
    log:
        "logs/mia/{base}/reference.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/mia_statistics.py"


rule membership_inference:
    input:
        unpack(base_model_inputs),
        manifest="results/private/runs/{base}/{defense}-{tuning}-s{seed}/manifest.json",
        members="results/private/mia/members.parquet",
        reference="results/private/mia/{base}/reference.parquet",
    output:
        # One job attacks every checkpoint of a run; each checkpoint's file is a target of its own.
        results=expand(
            "results/runs/{{base}}/{{defense}}-{{tuning}}-s{{seed}}/mia/{checkpoint}.tsv",
            checkpoint=CHECKPOINTS,
        ),
        scores=expand(
            "results/runs/{{base}}/{{defense}}-{{tuning}}-s{{seed}}/mia/{checkpoint}.scores.parquet",
            checkpoint=CHECKPOINTS,
        ),
    params:
        base_model=lambda wildcards: BASE_MODELS[wildcards.base],
        mia=config["mia"],
        max_length=config["train"]["block_size"],
        device=config["train"]["device"],
    threads: 2
    resources:
        gpu=config["train"]["gpus"],
    log:
        "logs/mia/{base}/{defense}-{tuning}-s{seed}.log",
    benchmark:
        "benchmarks/mia/{base}/{defense}-{tuning}-s{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/mia_statistics.py"
