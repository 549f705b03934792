"""Fetch and unpack the CMU Enron tarball: resumable, checksummed, and clear about what to do offline.

CMU publishes no checksum, so unless the config pins a sha256 the first complete download's sha256
is written to a small record file and every later use is verified against it (trust on first use).
Bytes arrive in ``<dest>.part`` (resumed with an HTTP Range request) and the file only gets its
final name once complete and verified, so a file at `dest_path` is always whole.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from piimem.progress import Progress

CMU_ENRON_URL = "https://www.cs.cmu.edu/~enron/enron_mail_20150507.tar.gz"
CHUNK_BYTES = 1 << 20
EXTRACTED_MARKER = ".extracted"


class DownloadError(RuntimeError):
    """The file could not be fetched; the message says where to put it by hand."""


class ChecksumError(RuntimeError):
    """The bytes on disk are not the ones expected."""


def _offline_message(url: str, dest: Path, why: str) -> str:
    return (
        f"could not download {url}: {why}.\n"
        f"If this machine is offline, download that file elsewhere and put it at\n"
        f"    {dest}\n"
        f"(same name, complete file); then run again and the run continues from there."
    )


def sha256_file(path: str | os.PathLike, desc: str | None = None) -> str:
    digest = hashlib.sha256()
    path = Path(path)
    progress = Progress(path.stat().st_size, desc or f"sha256 {path.name}", unit="B")
    with open(path, "rb") as fh, progress:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
            progress.update(len(chunk))
    return digest.hexdigest()


def _read_record(record: Path) -> str | None:
    if not record.exists():
        return None
    fields = record.read_text().split()
    if not fields or len(fields[0]) != 64:
        raise ChecksumError(f"{record}: expected a sha256 hex digest as first field, found {fields[:1]!r}")
    return fields[0].lower()


def _verify(path: Path, got: str, sha256: str | None, record: Path) -> None:
    """Check `got` against the pinned sha256, else the record; record it when there is neither."""
    if sha256:
        expected, source = sha256.lower(), "the configured sha256 (corpus.cmu.sha256)"
    else:
        expected, source = _read_record(record), f"the checksum recorded at first download in {record}"
    if expected is None:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(f"{got}  {path.name}\n")
        return
    if got != expected:
        raise ChecksumError(f"{path}: sha256 {got} does not match {source}: {expected}")


def _fetch(url: str, part: Path, timeout: float) -> tuple[bool, str]:
    """Append the missing bytes of `url` to `part`; (complete, why-not)."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "piimem"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Nothing left to send: either the .part is complete or it is longer than the file.
            content_range = exc.headers.get("Content-Range", "")
            if content_range.startswith("bytes */") and content_range[8:].isdigit():
                if int(content_range[8:]) == offset:
                    return True, ""
            part.unlink()
            return False, "the partial file did not match the server's file; it was removed"
        raise
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range header and sends the whole file
        length = response.headers.get("Content-Length")
        expected = offset + int(length) if length and length.isdigit() else None
        mode = "ab" if offset else "wb"
        with open(part, mode) as fh, Progress(expected, f"download {part.name}", unit="B") as progress:
            progress.update(offset)
            while chunk := response.read(CHUNK_BYTES):
                fh.write(chunk)
                progress.update(len(chunk))
    size = part.stat().st_size
    if expected is not None and size < expected:
        return False, f"connection closed after {size} of {expected} bytes"
    return True, ""


def download(
    url: str,
    dest_path: str | os.PathLike,
    *,
    sha256: str | None = None,
    checksum_record: str | os.PathLike | None = None,
    timeout: float = 20.0,
    retries: int = 3,
) -> Path:
    """Make `dest_path` hold the complete, verified file at `url`; returns `dest_path`.

    A file already at `dest_path` is verified and used without touching the network. Otherwise the
    download resumes from ``<dest_path>.part``; an interrupted transfer is retried `retries` times
    (each continuing where the last stopped). Checksums: `sha256` when given, else the one in
    `checksum_record` (default ``<dest_path>.sha256``), which the first complete download writes.
    Raises DownloadError (network; the message says where to put the file by hand) or ChecksumError.
    """
    dest = Path(dest_path)
    record = Path(checksum_record) if checksum_record else dest.with_name(dest.name + ".sha256")
    if dest.exists():
        _verify(dest, sha256_file(dest), sha256, record)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    why = ""
    for _attempt in range(retries + 1):
        try:
            complete, why = _fetch(url, part, timeout)
        except urllib.error.HTTPError as exc:
            raise DownloadError(_offline_message(url, dest, f"HTTP {exc.code} {exc.reason}")) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            complete, why = False, f"{type(exc).__name__}: {reason}"
            if not part.exists() or part.stat().st_size == 0:
                # Nothing arrived at all: the network is not there; retrying will not help.
                raise DownloadError(_offline_message(url, dest, why)) from exc
        if complete:
            break
    else:
        kept = ""
        if part.exists():
            kept = f" ({part.stat().st_size} bytes kept in {part}; running again resumes)"
        raise DownloadError(_offline_message(url, dest, why) + kept)
    got = sha256_file(part, desc=f"sha256 {dest.name}")
    try:
        _verify(part, got, sha256, record)
    except ChecksumError as exc:
        part.unlink()
        raise ChecksumError(f"{exc}; the downloaded file was removed, run again to fetch it anew") from exc
    os.replace(part, dest)
    return dest


class _CountingReader:
    """A file object that reports bytes read, so extraction of a .tar.gz shows progress."""

    def __init__(self, fh, progress: Progress):
        self._fh, self._progress, self._seen = fh, progress, 0

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        position = self._fh.tell()
        if position > self._seen:
            self._progress.update(position - self._seen)
            self._seen = position
        return data

    def __getattr__(self, name):  # seek, tell, ... as the real file
        return getattr(self._fh, name)


def extract(tar_path: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Unpack `tar_path` into `dest_dir` with tarfile's "data" filter; returns `dest_dir`.

    The data filter refuses members that would land outside `dest_dir` (absolute paths, "..", links
    pointing out) and strips special files and permission bits. A marker file written last makes a
    second call a no-op; an interrupted extraction is simply redone.
    """
    tar_path, dest = Path(tar_path), Path(dest_dir)
    marker = dest / EXTRACTED_MARKER
    if marker.exists() and marker.read_text().strip() == tar_path.name:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    progress = Progress(tar_path.stat().st_size, f"extract {tar_path.name}", unit="B")
    with open(tar_path, "rb") as raw, progress:
        try:
            with tarfile.open(fileobj=_CountingReader(raw, progress), mode="r:*") as archive:
                archive.extractall(dest, filter="data")
        except tarfile.FilterError as exc:
            raise ValueError(f"{tar_path}: refusing to extract member {exc.tarinfo.name!r}: {exc}") from exc
        except tarfile.TarError as exc:
            raise ValueError(f"{tar_path}: not a readable tar archive ({exc})") from exc
    marker.write_text(tar_path.name + "\n")
    return dest

