rule detect_pii:
    input:
        messages=MESSAGES,
    output:
        spans=SPANS,
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
        spans=SPANS,
        messages=MESSAGES,
        truth=GROUND_TRUTH,
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
