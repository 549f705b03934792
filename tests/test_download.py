import hashlib
import io
import random
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from piimem.corpus.download import ChecksumError, DownloadError, download, extract


def make_tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# Incompressible payload so the archive is big enough to be cut in the middle.
PAYLOAD = make_tar_gz({
    "maildir/alice/inbox/1.": b"From: a@example.com\n\nhello\n",
    "maildir/alice/inbox/2.": random.Random(0).randbytes(200_000),
})


class Server:
    """A local HTTP file server that honours "Range: bytes=N-" and can drop a connection midway."""

    def __init__(self, content: bytes):
        self.content = content
        self.cut_after: int | None = None  # send only this many bytes of the next response, then close
        self.requests: list[str | None] = []  # the Range header of each request
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if not self.path.endswith("/enron.tar.gz"):
                    self.send_error(404)
                    return
                server.requests.append(self.headers.get("Range"))
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
                    if start >= len(server.content):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(server.content)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    size = len(server.content)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                body = server.content[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/enron.tar.gz"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server(PAYLOAD)
    yield srv
    srv.close()


def test_offline_fails_at_once_and_says_where_to_put_the_file(tmp_path):
    dest = tmp_path / "resources" / "enron.tar.gz"
    url = "http://127.0.0.1:9/enron_mail_20150507.tar.gz"  # discard port: connection refused
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download(url, dest, timeout=5)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert url in message and str(dest) in message and "run again" in message
    assert not dest.exists()


def test_download_records_checksum_then_verifies_it(tmp_path, server):
    dest = tmp_path / "enron.tar.gz"
    assert download(server.url, dest) == dest
    assert dest.read_bytes() == PAYLOAD
    record = tmp_path / "enron.tar.gz.sha256"
    assert record.read_text().split()[0] == hashlib.sha256(PAYLOAD).hexdigest()
    assert not (tmp_path / "enron.tar.gz.part").exists()

    # Present file: verified, no network.
    assert download("http://127.0.0.1:9/unreachable", dest) == dest
    assert len(server.requests) == 1

    # The file changed on disk since the first download: refused.
    dest.write_bytes(PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1]))
    with pytest.raises(ChecksumError, match="does not match the checksum recorded at first download"):
        download(server.url, dest)


def test_resume_after_dropped_connection(tmp_path, server):
    dest = tmp_path / "enron.tar.gz"
    part = tmp_path / "enron.tar.gz.part"
    server.cut_after = 1000
    with pytest.raises(DownloadError, match="running again resumes"):
        download(server.url, dest, retries=0)
    assert part.stat().st_size == 1000 and not dest.exists()

    download(server.url, dest, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [None, "bytes=1000-"]

    # With retries, one call survives a dropped connection by itself.
    dest.unlink()
    server.cut_after, server.requests = 5000, []
    download(server.url, dest, retries=2)
    assert dest.read_bytes() == PAYLOAD and server.requests == [None, "bytes=5000-"]


def test_complete_part_file_is_finished_without_refetching(tmp_path, server):
    dest = tmp_path / "enron.tar.gz"
    (tmp_path / "enron.tar.gz.part").write_bytes(PAYLOAD)
    download(server.url, dest)
    assert dest.read_bytes() == PAYLOAD and server.requests == ["bytes=%d-" % len(PAYLOAD)]


def test_pinned_checksum_mismatch(tmp_path, server):
    dest = tmp_path / "enron.tar.gz"
    wrong = "0" * 64
    with pytest.raises(ChecksumError, match=f"does not match the configured sha256.*{wrong}"):
        download(server.url, dest, sha256=wrong)
    assert not dest.exists() and not (tmp_path / "enron.tar.gz.part").exists()
    # A pinned checksum is never turned into a record.
    assert not (tmp_path / "enron.tar.gz.sha256").exists()


def test_http_error_names_url_and_destination(tmp_path, server):
    dest = tmp_path / "enron.tar.gz"
    missing = server.url.replace("enron.tar.gz", "gone.tar.gz")
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download(missing, dest)
    assert missing in str(info.value) and str(dest) in str(info.value)


def test_extract_is_idempotent_and_uses_the_data_filter(tmp_path):
    tar_path = tmp_path / "enron.tar.gz"
    tar_path.write_bytes(PAYLOAD)
    out = tmp_path / "unpacked"
    assert extract(tar_path, out) == out
    first = out / "maildir/alice/inbox/1."
    assert first.read_bytes() == b"From: a@example.com\n\nhello\n"
    assert (out / ".extracted").read_text().strip() == "enron.tar.gz"
    first.write_bytes(b"edited")
    extract(tar_path, out)  # marker present: nothing is unpacked again
    assert first.read_bytes() == b"edited"

    evil = tmp_path / "evil.tar.gz"
    evil.write_bytes(make_tar_gz({"maildir/ok.": b"fine", "../outside.": b"escaped"}))
    with pytest.raises(ValueError, match=r"evil\.tar\.gz: refusing to extract member '\.\./outside\.'"):
        extract(evil, tmp_path / "evil_out")
    assert not (tmp_path / "outside.").exists()
    assert not (tmp_path / "evil_out" / ".extracted").exists()

    absolute = tmp_path / "absolute.tar.gz"
    absolute.write_bytes(make_tar_gz({"/etc/piimem-test": b"x"}))
    extract(absolute, tmp_path / "abs_out")  # the data filter strips the leading "/" and keeps it inside
    assert (tmp_path / "abs_out" / "etc" / "piimem-test").read_bytes() == b"x"
