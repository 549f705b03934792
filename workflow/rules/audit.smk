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
        manifest=MANIFEST,
        canaries=AUDIT_CANARIES,
    output:
        # At the last checkpoint: the bound and its counts, and one row per canary (public: ids and scores).
        result=run_checkpoints("audit", ".tsv", checkpoints=CHECKPOINTS[-1:])[0],
        records=run_checkpoints("audit", ".audit.parquet", checkpoints=CHECKPOINTS[-1:])[0],
    params:
        base_model=base_model_name,
        audit=config["audit"],
        batch_size=config["extraction"]["batch_size"],
        device=config["train"]["device"],
    threads: model_threads
    resources:
        gpu=ONE_GPU,
    log:
        f"logs/audit/{RUN}.log",
    benchmark:
        f"benchmarks/audit/{RUN}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/audit.py"
