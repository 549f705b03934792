# Aggregation: every per-checkpoint result -> results/metrics.parquet -> paper tables and figures, all
# collected by `snakemake --report results/report.html`. Cheap jobs: on a cluster they run on the head node.


localrules:
    aggregate_metrics,
    comparisons,
    tables,
    figures,
    all,


rule aggregate_metrics:
    input:
        run_results,
    output:
        metrics=METRICS,
        # Who each run is (piimem.plan.Plan.identity): defense kind and options, method, swept values.
        runs=RUN_IDENTITY,
    params:
        corpus=CORPUS,
        level=config["report"]["ci"]["level"],
        identity=PLAN.identity(),
        select=config["tuning"]["select"],
        finetuning_epoch=config["report"]["finetuning_epoch"],
    log:
        "logs/report/aggregate_metrics.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/aggregate_metrics.py"


# Every interval that needs the runs' per-item records (strings, test messages, MIA examples): paired
# bootstraps of the comparisons between runs, read by the tables, the claims and the figures.
rule comparisons:
    input:
        metrics=METRICS,
        runs=RUN_IDENTITY,
        records=item_results,
    output:
        comparisons=COMPARISONS,
    params:
        ci=config["report"]["ci"],
        finetuning_epoch=config["report"]["finetuning_epoch"],
        taus=TAUS,
        model_sizes=MODEL_SIZES,
        audit_confidence=config["audit"]["confidence"],
    log:
        "logs/report/comparisons.log",
    benchmark:
        "benchmarks/report/comparisons.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/comparisons.py"


rule tables:
    input:
        metrics=METRICS,
        runs=RUN_IDENTITY,
        comparisons=COMPARISONS,
    output:
        markdown=expand("results/tables/{table}.md", table=TABLES),
        csv=expand("results/tables/{table}.csv", table=TABLES),
        latex=expand("results/tables/{table}.tex", table=TABLES),
        # The answer on one screen: one line per question, read from the claims; the report's landing page.
        summary="results/summary.md",
        summary_html=report("results/summary.html", caption="../report/summary.rst", category="Summary"),
        summary_rst="results/summary.rst",  # the report's landing page includes it
        # The report shows HTML inline (a CSV only as a download).
        html=[
            report(
                f"results/tables/{table}.html",
                caption=f"../report/table_{table}.rst",
                category="Tables",
            )
            for table in TABLES
        ],
    params:
        finetuning_epoch=config["report"]["finetuning_epoch"],
        level=config["report"]["ci"]["level"],
        claims=config["claims"],
        audit_confidence=config["audit"]["confidence"],
        select=config["tuning"]["select"],
        # the span every perplexity and MIA score reads, said in the tables' notes
        scored_tokens=config["train"]["block_size"],
        # what the summary says was run
        context={
            "corpus": CORPUS,
            "base_models": list(BASE_MODELS),
            "runs": len(RUNS),
            "checkpoints": len(CHECKPOINTS),
            "seeds": config["seeds"],
        },
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
        # min_strings greys the panels too few strings decide; chance_margin draws AUC's chance band
        claims=config["claims"],
    log:
        "logs/report/figures.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/figures.py"
