rule detect_pii:
    input:
        messages="results/private/corpus/messages.parquet",
    output:
        spans="results/private/pii/spans.parquet",
        summary="results/pii/summary.tsv",
    params:
        pii=config["pii"],
        text_headers=config["corpus"]["text_headers"],
    threads: config["pii"]["processes"]
    log:
        "logs/pii/detect.log",
    benchmark:
        "benchmarks/pii/detect.tsv"
    conda:
        "../../envs/pii.yaml"
    script:
        "../scripts/detect_pii.py"


rule evaluate_pii:
    input:
        spans="results/private/pii/spans.parquet",
        messages="results/private/corpus/messages.parquet",
        truth="resources/synthetic/ground_truth.parquet",
    output:
        evaluation="results/pii/evaluation.tsv",
    params:
        entity_types=config["pii"]["entity_types"],
    log:
        "logs/pii/evaluate.log",
    conda:
        "../../envs/pii.yaml"
    script:
        "../scripts/evaluate_pii.py"
