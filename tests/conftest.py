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
