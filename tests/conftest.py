import json
from pathlib import Path

import pytest

# The real Enron sample lives beside the project (../shared), never inside it: real people's data.
ENRON_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "enron-mini"


@pytest.fixture(scope="session")
def enron_mini_dir() -> Path:
    if not ENRON_MINI.is_dir():
        pytest.skip(f"real Enron sample not found at {ENRON_MINI} (it is not shipped with the project)")
    return ENRON_MINI


@pytest.fixture(scope="session")
def enron_mini_parsed(enron_mini_dir):
    """parse_maildir(enron-mini) with default settings, parsed once per test session."""
    from piimem.corpus.maildir import parse_maildir

    return parse_maildir(enron_mini_dir)


@pytest.fixture
def gpt2_in_hf_cache(tmp_path, monkeypatch):
    """A Hugging Face cache (HF_HUB_CACHE, also for Snakemake run by the test) holding GPT-2's config.json:
    the workflow's check before any job that `gpt2` loads offline passes; the model itself is not there."""
    from workflow_helpers import GPT2_CONFIG, hub_cache

    cache = hub_cache(tmp_path / "hf-hub", "gpt2", {"config.json": json.dumps(GPT2_CONFIG).encode()})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache
