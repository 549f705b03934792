rule defense_text:
    input:
        unpack(defense_inputs),
    output:
        texts="results/private/defense/{defense}/train.parquet",
        replacements="results/private/defense/{defense}/replacements.parquet",
        summary="results/defense/{defense}/summary.tsv",
    params:
        defense=lambda wildcards: TEXTS[wildcards.defense],
        options=defense_options,
    log:
        "logs/defense/{defense}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/defense_text.py"
