# Membership inference. `mia_members` samples members (train) and non-members (test), length-matched in the
# base model's tokens; `mia_reference` scores them with the base model (the Ref attack's reference);
# `membership_inference` scores them with every checkpoint of a run and attacks. A defended run is also
# attacked on the text it trained on (`mia_trained_texts`, non-members put through the same defense).


rule mia_members:
    input:
        unpack(base_model_inputs),
        messages=MESSAGES,
        splits=SPLITS,
    output:
        members="results/private/mia/{base}/members.parquet",
    params:
        base_model=base_model_name,
        n=config["mia"]["n"],
        length_bins=config["mia"]["length_bins"],
        seed=config["mia"]["seed"],
    log:
        "logs/mia/{base}/members.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/mia_members.py"


rule mia_trained_texts:
    input:
        unpack(trained_view_inputs),
    output:
        texts="results/private/mia/{base}/trained/{defense}.parquet",
    params:
        defense=lambda wildcards: DEFENSE_VARIANTS[wildcards.defense]["defense"],
        options=defense_options,
        dedup=dedup_options,
    log:
        "logs/mia/{base}/trained/{defense}.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/mia_trained_texts.py"


# What the scoring pass reads: editing the bootstrap or the seed re-scores no model.
MIA_SCORING = {key: config["mia"][key] for key in ("attacks", "min_k", "batch_size")}


rule mia_reference:
    input:
        unpack(base_model_inputs),
        members="results/private/mia/{base}/members.parquet",
    output:
        statistics="results/private/mia/{base}/reference.parquet",
    params:
        base_model=base_model_name,
        mia=MIA_SCORING,
        max_length=config["train"]["block_size"],
        device=config["train"]["device"],
    threads: model_threads
    resources:
        gpu=ONE_GPU,
    log:
        "logs/mia/{base}/reference.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/mia_reference.py"


use rule mia_reference as mia_trained_reference with:
    input:
        unpack(base_model_inputs),
        members="results/private/mia/{base}/trained/{defense}.parquet",
    output:
        statistics="results/private/mia/{base}/trained/{defense}.reference.parquet",
    log:
        "logs/mia/{base}/trained/{defense}.reference.log",


rule membership_inference:
    input:
        unpack(base_model_inputs),
        unpack(membership_inference_inputs),
    output:
        # One job attacks every checkpoint of a run; each checkpoint's file is a target of its own.
        results=run_checkpoints("mia", ".tsv"),
        scores=run_checkpoints("mia", ".scores.parquet"),
    params:
        base_model=base_model_name,
        mia=config["mia"],
        max_length=config["train"]["block_size"],
        device=config["train"]["device"],
    threads: model_threads
    resources:
        gpu=ONE_GPU,
    log:
        f"logs/mia/{RUN}.log",
    benchmark:
        f"benchmarks/mia/{RUN}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/membership_inference.py"
