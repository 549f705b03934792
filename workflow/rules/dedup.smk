rule deduplicate:
    input:
        messages="results/private/corpus/messages.parquet",
        splits="results/corpus/splits.parquet",
    output:
        clusters="results/dedup/clusters.parquet",
        texts="results/private/dedup/train.parquet",
        summary="results/dedup/summary.tsv",
    params:
        dedup=config["dedup"],
    log:
        "logs/dedup/deduplicate.log",
    benchmark:
        "benchmarks/dedup/deduplicate.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/deduplicate.py"
