# The privacy audit (piimem.audit, docs/audit.md): audit canaries, half of them in every defense's training
# text (defense.smk and dedup.smk read them), and per run a lower bound on ε from their scores.


rule audit_canaries:
    output:
        canaries=AUDIT_CANARIES,
        spans=AUDIT_SPANS,
        summary="results/audit/canaries.tsv",
    params:
        audit=config["audit"],
        pii=config["pii"],
    log:
        "logs/audit/canaries.log",
    conda:
        "../../envs/pii.yaml"
    script:
        "../scripts/audit_canaries.py"


rule audit:
    input:
        unpack(base_model_inputs),
        manifest="results/private/runs/{base}/{defense}-{tuning}-s{seed}/manifest.json",
        canaries=AUDIT_CANARIES,
    output:
        # At the last checkpoint: the bound and its counts, and one row per canary (public: ids and scores).
        result=f"results/runs/{{base}}/{{defense}}-{{tuning}}-s{{seed}}/audit/{CHECKPOINTS[-1]}.tsv",
        records=f"results/runs/{{base}}/{{defense}}-{{tuning}}-s{{seed}}/audit/{CHECKPOINTS[-1]}.audit.parquet",
    params:
        base_model=lambda wildcards: BASE_MODELS[wildcards.base],
        audit=config["audit"],
        batch_size=config["extraction"]["batch_size"],
        device=config["train"]["device"],
    threads: model_threads
    resources:
        gpu=ONE_GPU,
    log:
        "logs/audit/{base}/{defense}-{tuning}-s{seed}.log",
    benchmark:
        "benchmarks/audit/{base}/{defense}-{tuning}-s{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/audit.py"
