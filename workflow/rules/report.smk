# Aggregation: every per-checkpoint result -> results/metrics.parquet -> paper tables and figures, all
# collected by `snakemake --report results/report.html`. Cheap jobs: on a cluster they run on the head node.


localrules:
    aggregate_metrics,
    tables,
    figures,
    all,


rule aggregate_metrics:
    input:
        run_results,
    output:
        metrics="results/metrics.parquet",
    params:
        corpus=CORPUS,
    log:
        "logs/report/aggregate_metrics.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/aggregate_metrics.py"


rule tables:
    input:
        metrics="results/metrics.parquet",
    output:
        markdown=expand("results/tables/{table}.md", table=TABLES),
        csv=[
            report(
                f"results/tables/{table}.csv",
                caption=f"../report/table_{table}.rst",
                category="Tables",
            )
            for table in TABLES
        ],
        latex=expand("results/tables/{table}.tex", table=TABLES),
    params:
        finetuning_epoch=config["report"]["finetuning_epoch"],
        taus=TAUS,
    log:
        "logs/report/tables.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/tables.py"


rule figures:
    input:
        unpack(figure_inputs),
    output:
        png=[
            report(
                f"results/figures/{figure}.png",
                caption=f"../report/{figure}.rst",
                category="Figures",
                subcategory=FIGURE_GROUPS[figure],
            )
            for figure in FIGURES
        ],
        pdf=expand("results/figures/{figure}.pdf", figure=FIGURES),
    params:
        taus=TAUS,
    log:
        "logs/report/figures.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/figures.py"
