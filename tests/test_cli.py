"""The command line as a new user meets it: a misspelt key, a run away from the paper's setting, what a dry run
says is missing, and config/maildir.yaml, whose one edit is the path."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
import yaml
from workflow_helpers import ENRON_MINI, ROOT, planned_jobs, snakemake, write_config

from piimem.config import text_values, unknown_keys

MAILDIR = ROOT / "config" / "maildir.yaml"
PAPER_RMFT = ROOT / "config" / "paper-rmft.yaml"


def test_an_unknown_key_names_the_nearest_valid_one():
    assert unknown_keys({"defences": ["rmft"]}) == ["config: unknown key 'defences' (did you mean 'defenses'?)"]
    assert unknown_keys({"rmft": {"pp": 0.5}, "corpus": {"split": {"fractons": {}}}}) == [
        "config: unknown key 'rmft.pp' (did you mean 'rmft.p'?)",
        "config: unknown key 'corpus.split.fractons' (did you mean 'corpus.split.fractions'?)"]
    # inside a list of mappings and a mapping of the user's own names (a prompt set's data set)
    assert unknown_keys({"exclude": [{"defense": "dp"}, {"tunning": "lora"}]}) == [
        "config: unknown key 'exclude[1].tunning' (did you mean 'exclude[1].tuning'?)"]
    assert unknown_keys({"extraction": {"prompt_files": {"wiki": {"path": "x", "splt": "test"}, "mine": "a.txt"}}}) == [
        "config: unknown key 'extraction.prompt_files.wiki.splt' (did you mean 'extraction.prompt_files.wiki.split'?)"]
    far = unknown_keys({"rmft": {"zzz": 1}})
    assert far == ["config: unknown key 'rmft.zzz' (the keys under 'rmft' are entity_types, keep, p, redraw_per_epoch, "
                   "scope, seed; docs/configuration.md lists them all)"]
    embedded = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    shipped = [yaml.safe_load(path.read_text()) for path in sorted((ROOT / "config").glob("*.yaml"))]
    assert [unknown_keys(config) for config in [embedded, *shipped]] == [[]] * (1 + len(shipped))


def test_a_misspelt_key_stops_a_dry_run_in_one_line(tmp_path):
    write_config(tmp_path)
    proc = snakemake(tmp_path, "-n", "--config", "defences=[rmft]", check=False)
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config: unknown key 'defences' (did you mean 'defenses'?)" in said
    # Snakemake's frame around it, not the schema and the config (4,222 lines before)
    assert len(said.splitlines()) <= 12 and "Failed validating" not in said and "additionalProperties" not in said
    write_config(tmp_path, {"rmft": {"pp": 0.5}})
    proc = snakemake(tmp_path, "-n", check=False)
    assert "config: unknown key 'rmft.pp' (did you mean 'rmft.p'?)" in proc.stdout + proc.stderr
    assert len((proc.stdout + proc.stderr).splitlines()) <= 12


def test_a_number_given_as_text_says_where_to_set_it(tmp_path):
    # Snakemake reads a --config list or mapping with YAML's base loader: every value in it is text.
    assert text_values({"rmft": {"p": "0.5", "scope": "all"}, "seeds": ["1", "2"], "corpus": {"path": "/data/12"}}) == [
        "config: rmft.p holds the text '0.5' where a number or true/false is expected: a list or mapping given with "
        "--config holds text only; set rmft.p in a YAML file given with --configfile",
        "config: seeds holds the text '1' where a number or true/false is expected: a list or mapping given with "
        "--config holds text only; set seeds in a YAML file given with --configfile"]
    # In a file, YAML 1.1 reads 2e-5 (no dot) as text too.
    assert text_values({"train": {"lr": "2e-5"}}) == [
        "config: train.lr holds the text '2e-5' where a number is expected: YAML reads a number with an exponent "
        "but no dot as text; write it as 2.0e-5"]
    write_config(tmp_path)
    proc = snakemake(tmp_path, "-n", "--config", "rmft={p: 0.5}", check=False)
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "config: rmft.p holds the text '0.5'" in said and len(said.splitlines()) <= 12
    # A text value in a --config mapping is fine, merged key by key over the config files.
    jobs = planned_jobs(tmp_path, "--config", "corpus={name: mine}")
    assert jobs["parse_corpus"] == 1


def test_a_single_option_away_from_the_paper_names_the_run_and_the_default_keeps_its_names(tmp_path):
    write_config(tmp_path, {"rmft": {"p": 0.5}})
    out = snakemake(tmp_path, "-n").stdout
    assert "results/runs/tiny-gpt2/rmft_p0.5-full-s42/extraction/c03.tsv" in out
    assert "tiny-gpt2/rmft-full-s42" not in out
    write_config(tmp_path)  # the embedded default runs the paper's settings: its names and paths stay
    out = snakemake(tmp_path, "-n").stdout
    runs = sorted(set(re.findall(r"results/private/runs/(tiny-gpt2/[^/]+)/manifest\.json", out)))
    assert runs == ["tiny-gpt2/dedup-full-s42", "tiny-gpt2/none-full-s42", "tiny-gpt2/none-head-s42",
                    "tiny-gpt2/none-lora-s42", "tiny-gpt2/none-prefix-s42", "tiny-gpt2/none-prompt-s42",
                    "tiny-gpt2/none-ptuning-s42", "tiny-gpt2/rmft-full-s42"]


def test_a_dry_run_lists_every_missing_input_in_one_block(tmp_path, monkeypatch):
    (tmp_path / "hub").mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # no GPT-2 on this machine
    write_config(tmp_path)
    proc = snakemake(tmp_path, "-n", "--configfile", str(PAPER_RMFT), check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]  # planning on a login node goes on
    said = proc.stdout + proc.stderr
    block = said[said.index("piimem: 4 input(s) of this config are not on this machine"):]
    block = block[:block.index("\n", block.index("extraction.prompt_files.wikitext.path"))]
    assert re.fullmatch(
        r"piimem: 4 input\(s\) of this config are not on this machine \(a dry run plans on\):\n"
        r"  a real run stops before any job until it is there:\n"
        r"  - base model 'gpt2' \(config key `base_models`\) is not available offline: .*hf download gpt2.*\n"
        r"  a job downloads it, which needs network:\n"
        r"  - corpus.source cmu: the CMU Enron tarball \(about 423 MB\) is not at "
        r"resources/cmu/enron_mail_20150507.tar.gz; the job download_cmu fetches it from corpus.cmu.url .*\n"
        r"  its own jobs fail saying so; the rest of the run goes on:\n"
        r"  - extraction.prompt_files.common-crawl: 'resources/common-crawl/windows.txt' does not exist\. .*\n"
        r"  - extraction.prompt_files.wikitext.path: 'Salesforce/wikitext' is not in the local datasets cache .*",
        block)
    assert said.index("piimem: 4 input(s)") < said.index("Job stats")  # up front, before the plan
    # A real run stops on the missing model before any job, naming it; the download would have gone on.
    proc = snakemake(tmp_path, "--configfile", str(PAPER_RMFT), check=False)
    assert proc.returncode != 0 and "base model 'gpt2' (config key `base_models`)" in proc.stdout + proc.stderr
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()


def _maildir_config(tmp_path: Path, path: str) -> Path:
    """config/maildir.yaml with its one edit made, the path, as a user makes it: the line, nothing else."""
    text, n = re.subn(r"^(  path: )null ", rf"\g<1>{path} ", MAILDIR.read_text(), flags=re.M)
    assert n == 1
    edited = tmp_path / "maildir.yaml"
    edited.write_text(text)
    return edited


def test_the_maildir_config_needs_only_its_path(tmp_path):
    write_config(tmp_path)
    proc = snakemake(tmp_path, "-n", "--configfile", str(MAILDIR), check=False)
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "corpus.path: required when corpus.source is 'maildir'" in said
    if not ENRON_MINI.is_dir():
        pytest.skip(f"real Enron sample not found at {ENRON_MINI} (it is not shipped with the project)")
    jobs = planned_jobs(tmp_path, "--configfile", str(_maildir_config(tmp_path, str(ENRON_MINI))))
    # the default's two studies on the maildir: the tiny GPT-2 pre-trains on the public split
    assert {rule: jobs.get(rule) for rule in ("parse_corpus", "pretrain_tiny_gpt2", "finetune", "extract_pii")} == {
        "parse_corpus": 1, "pretrain_tiny_gpt2": 1, "finetune": 8, "extract_pii": 3}
    assert not {"synthetic_corpus", "outsider_corpus", "canary_exposure", "evaluate_pii"} & set(jobs)
    # the path from the command line instead: a text value in a --config mapping arrives as it is
    by_flag = planned_jobs(tmp_path, "--configfile", str(MAILDIR), "--config", f"corpus={{path: {ENRON_MINI}}}")
    assert by_flag == jobs


@pytest.mark.slow
@pytest.mark.skipif(not ENRON_MINI.is_dir(), reason="../shared/data/enron-mini is not beside the project")
def test_the_maildir_config_runs_the_corpus_stages_on_real_mail(tmp_path):
    write_config(tmp_path)
    edited = _maildir_config(tmp_path, str(ENRON_MINI))
    snakemake(tmp_path, "results/pii/summary.tsv", "results/corpus/summary.tsv", "--configfile", str(edited))
    summary = pl.read_csv(tmp_path / "results/corpus/summary.tsv", separator="\t")
    messages = dict(zip(summary["split"], summary["messages"]))
    fractions = yaml.safe_load(MAILDIR.read_text())["corpus"]["split"]["fractions"]
    assert messages["all"] == 1041 and messages["public"] > 0  # the tiny GPT-2's pre-training text
    for split, fraction in fractions.items():
        assert abs(messages[split] / messages["all"] - fraction) < 0.02, split
    pii = pl.read_csv(tmp_path / "results/pii/summary.tsv", separator="\t")
    pii = dict(zip(pii["entity_type"], pii["n_spans"]))
    assert pii["EMAIL_ADDRESS"] > 5000 and pii["PERSON"] > 1000
