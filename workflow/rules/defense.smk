rule defense_text:
    input:
        unpack(defense_inputs),
    output:
        texts="results/private/defense/{text}/train.parquet",
        replacements="results/private/defense/{text}/replacements.parquet",
        summary="results/defense/{text}/summary.tsv",
    params:
        defense=lambda wildcards: TEXTS[wildcards.text],
        options=text_options,
    log:
        "logs/defense/{text}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/defense_text.py"
