rule synthetic_corpus:
    output:
        maildir=directory("resources/synthetic/maildir"),
        truth=GROUND_TRUTH,
    params:
        # the outsiders' world (pretrain) is a corpus of its own: editing it must not rebuild this one
        synthetic={k: v for k, v in config["corpus"]["synthetic"].items() if k != "pretrain"},
    log:
        "logs/corpus/synthetic.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/synthetic_corpus.py"


rule download_cmu:
    output:
        tarball="resources/cmu/enron_mail_20150507.tar.gz",
    params:
        url=config["corpus"]["cmu"]["url"],
        sha256=config["corpus"]["cmu"]["sha256"],
    log:
        "logs/corpus/download_cmu.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/download_cmu.py"


rule extract_cmu:
    input:
        tarball="resources/cmu/enron_mail_20150507.tar.gz",
    output:
        maildir=directory("resources/cmu/maildir"),
    log:
        "logs/corpus/extract_cmu.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/extract_cmu.py"


if HF:

    # A text data set (corpus.source hf), loaded offline with datasets: its records are the messages.
    rule load_dataset_corpus:
        input:
            unpack(dataset_inputs),
        output:
            messages=MESSAGES,
            quarantine=QUARANTINE,
        params:
            hf=config["corpus"]["hf"],
            dedup=config["dedup"],
        log:
            "logs/corpus/parse.log",
        benchmark:
            "benchmarks/corpus/parse.tsv"
        conda:
            "../../envs/data.yaml"
        script:
            "../scripts/load_dataset_corpus.py"

else:

    rule parse_corpus:
        input:
            maildir=maildir_root(),
        output:
            messages=MESSAGES,
            quarantine=QUARANTINE,
        params:
            text_headers=config["corpus"]["text_headers"],
            max_file_bytes=config["corpus"]["max_file_bytes"],
            mailboxes=config["corpus"]["cmu"]["mailboxes"] if config["corpus"]["source"] == "cmu" else None,
        log:
            "logs/corpus/parse.log",
        benchmark:
            "benchmarks/corpus/parse.tsv"
        conda:
            "../../envs/data.yaml"
        script:
            "../scripts/parse_corpus.py"


rule split_corpus:
    input:
        messages=MESSAGES,
        quarantine=QUARANTINE,
    output:
        splits=SPLITS,
        summary="results/corpus/summary.tsv",
        links="results/corpus/links.tsv",
    params:
        split=config["corpus"]["split"],
        # a data set's own splits, mapped to piimem's (corpus.hf.splits); None: the fractions assign them
        hf=config["corpus"]["hf"] if HF_MAPPED else None,
    log:
        "logs/corpus/split.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/split_corpus.py"


rule corpus_stats:
    input:
        messages=MESSAGES,
        spans=SPANS,
        splits=SPLITS,
    output:
        stats=report(
            "results/corpus/stats.tsv",
            caption="../report/corpus_stats.rst",
            category="Corpus",
        ),
    params:
        stats=config["corpus"]["stats"],
    log:
        "logs/corpus/stats.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/corpus_stats.py"


# The tiny GPT-2's pre-training text on the synthetic corpus: a second world of outsiders, less every
# message that holds a training PII string (piimem.corpus.pretraining).
rule outsider_corpus:
    input:
        messages=MESSAGES,
        splits=SPLITS,
        truth=GROUND_TRUTH,
    output:
        texts="results/private/corpus/outsiders.parquet",
        pii="results/private/corpus/outsiders.pii.parquet",
        summary="results/corpus/outsiders.tsv",
    params:
        synthetic=config["corpus"]["synthetic"],
        text_headers=config["corpus"]["text_headers"],
        max_file_bytes=config["corpus"]["max_file_bytes"],
        person_min_words=config["extraction"]["person_min_words"],
    log:
        "logs/corpus/outsiders.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/outsider_corpus.py"
