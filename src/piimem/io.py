"""Reading and writing tables, with the private-file rule in one place.

Files that hold raw PII (corpus text, span tables, RMFT mappings) are written with mode 0600
inside directories with mode 0700, and the mode is set when the file is created, so the data
is never readable by others, not even for a moment.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def _open_private(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in (path.parent, *path.parent.parents):
        if parent.name == "private":
            os.chmod(parent, PRIVATE_DIR_MODE)
            break
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    os.fchmod(fd, PRIVATE_FILE_MODE)  # O_CREAT's mode is ignored when the file already exists
    return os.fdopen(fd, "wb")


def write_private_parquet(df: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write a table that holds raw PII: mode 0600 from the first byte."""
    with _open_private(Path(path)) as fh:
        df.write_parquet(fh)


def write_private_text(text: str, path: str | os.PathLike) -> None:
    with _open_private(Path(path)) as fh:
        fh.write(text.encode("utf-8"))


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
