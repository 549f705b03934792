# PII extraction: prompts per (base model, prompt set), generations of the base model (whose finds are
# subtracted) and of every checkpoint of a run; canary exposure on the synthetic corpus.


rule extraction_prompts:
    input:
        unpack(extraction_prompt_inputs),
    output:
        prompts="results/private/extraction/{base}/prompts/{prompt_set}.parquet",
    params:
        base_model=base_model_name,
        # Only the keys prompt building reads: decoding settings leave the prompts alone.
        options={
            key: config["extraction"][key]
            for key in ("n_prompts", "prompt_tokens", "window_position", "prefix_entity_types", "seed")
        },
        dataset=prompt_dataset,
    log:
        "logs/extract/{base}/prompts-{prompt_set}.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/extraction_prompts.py"


# A prompt file the config names but that is not on disk (WikiText-2 cannot be fetched offline): its one
# job fails saying what to put where, while every job that does not need it runs on (--keep-going).
# Defined only while the file is missing, so that no rule ever claims a user's own file as its output.
for _name, _slug, _path in MISSING_PROMPT_FILES:

    rule:
        name:
            f"missing_prompt_file_{_slug}"
        output:
            _path,
        params:
            name=_name,
        log:
            f"logs/extract/missing-prompt-file-{_name}.log",
        conda:
            "../../envs/torch.yaml"
        script:
            "../scripts/missing_prompt_file.py"


rule extract_base:
    input:
        unpack(base_model_inputs),
        unpack(extraction_inputs),
    output:
        found="results/private/extraction/{base}/base-found.parquet",
    params:
        base_model=base_model_name,
        extraction=EXTRACTION_GENERATION,
        score_threshold=config["pii"]["score_threshold"],
        ignore=config["pii"]["ignore"],
        device=config["train"]["device"],
    # See finetune's priority.
    priority: 10
    threads: model_threads
    resources:
        gpu=ONE_GPU,
    log:
        "logs/extract/{base}/base.log",
    benchmark:
        "benchmarks/extract/{base}/base.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/extract_base.py"


rule extract_pii:
    input:
        unpack(base_model_inputs),
        unpack(extraction_inputs),
        unpack(pretraining_pii_inputs),
        manifest=MANIFEST,
        base_found="results/private/extraction/{base}/base-found.parquet",
        messages=MESSAGES,
        splits=SPLITS,
        spans=SPANS,
    output:
        # One job attacks every checkpoint of a run; the strings found stay private, the counts are public.
        found=run_checkpoints("extraction", ".parquet", private=True),
        results=run_checkpoints("extraction", ".tsv"),
        # Per true PII string (an id, no text): extracted or not, for the report's paired intervals.
        strings=run_checkpoints("extraction", ".strings.parquet"),
    params:
        base_model=base_model_name,
        extraction=EXTRACTION_GENERATION,
        score_threshold=config["pii"]["score_threshold"],
        ignore=config["pii"]["ignore"],
        device=config["train"]["device"],
    # See finetune's priority.
    priority: 10
    threads: model_threads
    resources:
        gpu=ONE_GPU,
    log:
        f"logs/extract/{RUN}.log",
    benchmark:
        f"benchmarks/extract/{RUN}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/extract_pii.py"


rule canary_contexts:
    input:
        unpack(base_model_inputs),
        truth=GROUND_TRUTH,
        messages=MESSAGES,
        splits=SPLITS,
    output:
        canaries="results/private/extraction/{base}/canaries.parquet",
    params:
        base_model=base_model_name,
        context_tokens=config["extraction"]["canaries"]["context_tokens"],
    log:
        "logs/extract/{base}/canaries.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/canary_contexts.py"


rule canary_exposure:
    input:
        unpack(base_model_inputs),
        manifest=MANIFEST,
        canaries="results/private/extraction/{base}/canaries.parquet",
    output:
        # Per checkpoint one row per canary (public: ids and numbers, no value), and the same records as
        # parquet for the report's paired comparisons over canaries.
        results=run_checkpoints("canaries", ".tsv"),
        records=run_checkpoints("canaries", ".canaries.parquet"),
    params:
        base_model=base_model_name,
        n_candidates=config["extraction"]["canaries"]["n_candidates"],
        seed=config["extraction"]["seed"],
        batch_size=config["extraction"]["batch_size"],
        device=config["train"]["device"],
    threads: model_threads
    resources:
        gpu=ONE_GPU,
    log:
        f"logs/extract/canaries/{RUN}.log",
    benchmark:
        f"benchmarks/extract/canaries/{RUN}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/canary_exposure.py"


# Targeted attacks: PII inference and reconstruction on masked training occurrences, association prompts
# from owners' names. Targets are built once per base model, so every run is scored on the same ones.
rule attack_targets:
    input:
        unpack(base_model_inputs),
        unpack(pretraining_pii_inputs),
        messages=MESSAGES,
        splits=SPLITS,
        spans=SPANS,
    output:
        targets="results/private/extraction/{base}/targets.parquet",
        association="results/private/extraction/{base}/association.parquet",
    params:
        base_model=base_model_name,
        options=TARGET_OPTIONS,
    log:
        "logs/extract/{base}/targets.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/attack_targets.py"


rule targeted_base:
    input:
        unpack(base_model_inputs),
        targets="results/private/extraction/{base}/targets.parquet",
        association="results/private/extraction/{base}/association.parquet",
    output:
        results="results/extraction/{base}/targeted-base.tsv",
        records="results/extraction/{base}/targeted-base.targets.parquet",
    params:
        base_model=base_model_name,
        options=TARGETED_ATTACK_OPTIONS,
        score_threshold=config["pii"]["score_threshold"],
        ignore=config["pii"]["ignore"],
        device=config["train"]["device"],
    # See finetune's priority.
    priority: 20
    threads: model_threads
    resources:
        gpu=ONE_GPU,
    log:
        "logs/extract/{base}/targeted-base.log",
    benchmark:
        "benchmarks/extract/{base}/targeted-base.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/targeted_base.py"


rule targeted_attacks:
    input:
        unpack(base_model_inputs),
        manifest=MANIFEST,
        targets="results/private/extraction/{base}/targets.parquet",
        association="results/private/extraction/{base}/association.parquet",
        base_results="results/extraction/{base}/targeted-base.tsv",
        base_records="results/extraction/{base}/targeted-base.targets.parquet",
    output:
        # Counts per checkpoint (public), and per target an id, a rank and flags (no string).
        results=run_checkpoints("targeted", ".tsv", checkpoints=TARGETED_CHECKPOINTS),
        records=run_checkpoints("targeted", ".targets.parquet", checkpoints=TARGETED_CHECKPOINTS),
    params:
        base_model=base_model_name,
        options=TARGETED_ATTACK_OPTIONS,
        score_threshold=config["pii"]["score_threshold"],
        ignore=config["pii"]["ignore"],
        device=config["train"]["device"],
    # See finetune's priority.
    priority: 20
    threads: model_threads
    resources:
        gpu=ONE_GPU,
    log:
        f"logs/extract/targeted/{RUN}.log",
    benchmark:
        f"benchmarks/extract/targeted/{RUN}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/targeted_attacks.py"
