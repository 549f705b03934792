"""Reading and writing tables, with the private-file rule in one place.

Files that hold raw PII (corpus text, span tables, RMFT mappings) are written with mode 0600
inside directories with mode 0700 (every folder from the one named "private" down), and the mode is
set when the file is created, so the data is never readable by others, not even for a moment.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import polars as pl

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def make_private_dirs(paths: Iterable[str | os.PathLike], tree: str | os.PathLike | None = None) -> None:
    """Create the folders of `paths` (files) that lie inside a folder named "private", each with mode
    0700, and set 0700 on those that already exist; with `tree`, also on every folder below it.

    Snakemake creates a job's output folders with the default mode (0755) just before the job runs, so
    the workflow calls this for every planned output before the first job (onstart in common.smk), and
    every private write calls it for its own file.
    """
    for path in paths:
        folder = Path(path).parent
        chain = [folder, *folder.parents]
        names = [f.name for f in chain]
        if "private" not in names:
            continue
        private = chain[names.index("private")]
        private.parent.mkdir(parents=True, exist_ok=True)
        for step in reversed(chain[:names.index("private") + 1]):
            step.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
            os.chmod(step, PRIVATE_DIR_MODE)  # mkdir's mode passes through the umask; existing ones keep theirs
    if tree is not None and Path(tree).is_dir():
        os.chmod(tree, PRIVATE_DIR_MODE)
        for dirpath, dirnames, _ in os.walk(tree):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), PRIVATE_DIR_MODE)


def _open_private(path: Path):
    make_private_dirs([path])
    path.parent.mkdir(parents=True, exist_ok=True)  # a private file outside any "private" folder
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    os.fchmod(fd, PRIVATE_FILE_MODE)  # O_CREAT's mode is ignored when the file already exists
    return os.fdopen(fd, "wb")


def write_private_parquet(df: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write a table that holds raw PII: mode 0600 from the first byte."""
    with _open_private(Path(path)) as fh:
        df.write_parquet(fh)


def write_table(df: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write a public table; the format follows the suffix (.parquet, .tsv, .csv)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        df.write_parquet(path)
    elif path.suffix == ".tsv":
        df.write_csv(path, separator="\t")
    elif path.suffix == ".csv":
        df.write_csv(path)
    else:
        raise ValueError(f"{path}: unknown table format {path.suffix!r} (expected .parquet, .tsv or .csv)")


def fingerprint(settings: dict, files: list[str | os.PathLike] = ()) -> str:
    """A digest of what a resumable job depends on: its settings and its input files.

    Files are identified by content hash when small and by (size, mtime) when large (model weights),
    so a resumed job never continues from state that was made for other inputs.
    """
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for root in sorted(map(Path, files)):
        for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if not path.is_file():
                continue
            info = path.stat()
            digest.update(str(path.relative_to(root) if root.is_dir() else path.name).encode())
            if info.st_size <= 64 << 20:
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            else:
                digest.update(f"{info.st_size}:{info.st_mtime_ns}".encode())
    return digest.hexdigest()


def create_private_files() -> None:
    """From now on this process creates files 0600 and folders 0700.

    For jobs whose every output is private, such as model weights and tokenizers trained on the corpus:
    libraries that write those files (transformers, safetensors) take no mode argument.
    """
    os.umask(0o077)
