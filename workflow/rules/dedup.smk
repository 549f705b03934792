rule deduplicate:
    input:
        unpack(audit_inputs),
        messages=MESSAGES,
        splits=SPLITS,
    output:
        clusters="results/dedup/t{threshold}/clusters.parquet",
        texts="results/private/dedup/t{threshold}/train.parquet",
        summary="results/dedup/t{threshold}/summary.tsv",
    params:
        dedup=lambda wildcards: {**config["dedup"], "threshold": float(wildcards.threshold)},
    log:
        "logs/dedup/deduplicate-t{threshold}.log",
    benchmark:
        "benchmarks/dedup/deduplicate-t{threshold}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/deduplicate.py"
