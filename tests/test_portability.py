"""No tracked file names a path of one machine: every path the project writes or documents is relative to
the project or the working directory, or configurable."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from workflow_helpers import ROOT

# Written in parts so that this file does not match itself.
MACHINE_DIRS = tuple("/" + name + "/" for name in ("tmp", "work", "root"))


def test_tracked_files_hold_no_absolute_machine_path():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: which files are tracked is unknown")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    found = []
    for name in filter(None, listed.decode().split("\0")):
        path = ROOT / name
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            found += [f"{name}:{number}: {line.strip()}" for d in MACHINE_DIRS if d in line][:1]
    assert found == []
