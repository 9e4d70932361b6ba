import hashlib
import http.server
import io
import sys
import threading

import pytest

from circle_repro.data.download import ChecksumError, DownloadError, fetch, file_digests, verify

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB + 4: more than one read chunk
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()
WRONG_SHA256 = "0" * 64


class LocalServer:
    """A 127.0.0.1 HTTP server with Range support, a request log and failure switches."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"/data/archive.tgz": PAYLOAD}
        self.requests: list[tuple[str, str | None]] = []
        self.honour_range = True
        self.cut_after: int | None = None  # send only this many body bytes, once
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                range_header = self.headers.get("Range")
                if range_header and server.honour_range:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if server.cut_after is not None:
                    chunk, server.cut_after = chunk[: server.cut_after], None
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str = "/data/archive.tgz") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = LocalServer()
    yield srv
    srv.close()


def test_http_fetch_verifies_and_lands(tmp_path, server):
    dest = tmp_path / "raw" / "archive.tgz"
    assert fetch(server.url(), dest, sha256=SHA256, md5=MD5, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["archive.tgz"]
    assert server.requests == [("/data/archive.tgz", None)]


def test_resume_from_partial_part_over_http(tmp_path, server):
    dest = tmp_path / "archive.tgz"
    (tmp_path / "archive.tgz.part").write_bytes(PAYLOAD[:300_000])
    fetch(server.url(), dest, sha256=SHA256, progress=False)
    assert server.requests == [("/data/archive.tgz", "bytes=300000-")]
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "archive.tgz.part").exists()


def test_interrupted_transfer_keeps_part_and_next_call_resumes(tmp_path, server):
    dest = tmp_path / "archive.tgz"
    server.cut_after = 123_456
    with pytest.raises(DownloadError, match="resume"):
        fetch(server.url(), dest, sha256=SHA256, progress=False, retries=0)
    part = tmp_path / "archive.tgz.part"
    assert part.read_bytes() == PAYLOAD[:123_456] and not dest.exists()
    fetch(server.url(), dest, sha256=SHA256, progress=False)
    assert server.requests[-1] == ("/data/archive.tgz", "bytes=123456-")
    assert dest.read_bytes() == PAYLOAD


def test_retries_resume_within_one_call(tmp_path, server, monkeypatch):
    monkeypatch.setattr("circle_repro.data.download.time.sleep", lambda s: None)
    server.cut_after = 5000
    fetch(server.url(), tmp_path / "a.tgz", sha256=SHA256, progress=False, retries=1)
    assert [r for _, r in server.requests] == [None, "bytes=5000-"]
    assert (tmp_path / "a.tgz").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(tmp_path, server):
    server.honour_range = False
    (tmp_path / "archive.tgz.part").write_bytes(b"garbage that is not a prefix")
    fetch(server.url(), tmp_path / "archive.tgz", sha256=SHA256, progress=False)
    assert (tmp_path / "archive.tgz").read_bytes() == PAYLOAD


def test_complete_part_answered_416_is_verified_and_landed(tmp_path, server):
    (tmp_path / "archive.tgz.part").write_bytes(PAYLOAD)
    fetch(server.url(), tmp_path / "archive.tgz", sha256=SHA256, progress=False)
    assert server.requests == [("/data/archive.tgz", f"bytes={len(PAYLOAD)}-")]
    assert (tmp_path / "archive.tgz").read_bytes() == PAYLOAD


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_checksum_mismatch_deletes_partial_and_explains(tmp_path, server, algorithm):
    dest = tmp_path / "archive.tgz"
    wrong = "0" * (64 if algorithm == "sha256" else 32)
    actual = SHA256 if algorithm == "sha256" else MD5
    with pytest.raises(ChecksumError) as info:
        fetch(server.url(), dest, progress=False, **{algorithm: wrong})
    message = str(info.value)
    assert str(dest) in message and wrong in message and actual in message and algorithm in message
    assert "Run again" in message and "deleted" in message
    assert (info.value.expected, info.value.actual) == (wrong, actual)
    assert list(tmp_path.iterdir()) == []


def test_existing_verified_file_is_not_downloaded_again(tmp_path, server):
    dest = tmp_path / "archive.tgz"
    dest.write_bytes(PAYLOAD)
    fetch(server.url(), dest, sha256=SHA256, progress=False)
    assert server.requests == []


def test_existing_corrupt_file_is_replaced_after_verification(tmp_path, server):
    dest = tmp_path / "archive.tgz"
    dest.write_bytes(b"stale")
    fetch(server.url(), dest, sha256=SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD and len(server.requests) == 1


def test_http_error_names_the_url(tmp_path, server):
    with pytest.raises(DownloadError, match=r"/missing.tgz: HTTP 404"):
        fetch(server.url("/missing.tgz"), tmp_path / "m.tgz", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_file_url_and_plain_path_with_resume(tmp_path):
    source = tmp_path / "src" / "archive.tgz"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.tgz.part").write_bytes(PAYLOAD[:1000])
    fetch(source.as_uri(), out / "a.tgz", sha256=SHA256, progress=False)
    fetch(str(source), out / "b.tgz", md5=MD5, progress=False)
    assert (out / "a.tgz").read_bytes() == PAYLOAD == (out / "b.tgz").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["a.tgz", "b.tgz"]


@pytest.mark.parametrize("as_uri", [False, True])
def test_mirror_replaces_host_and_path(tmp_path, as_uri):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "CUB_200_2011.tgz").write_bytes(PAYLOAD)
    # port 9 on loopback: if the mirror were ignored this would fail, never reach the internet
    url = "http://127.0.0.1:9/records/65de6-vp158/files/CUB_200_2011.tgz"
    dest = tmp_path / "raw" / "CUB_200_2011.tgz"
    fetch(url, dest, sha256=SHA256, mirror=mirror.as_uri() if as_uri else mirror, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_mirror_checksum_error_mentions_the_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "x.zip").write_bytes(b"not it")
    with pytest.raises(ChecksumError, match=r"mirror of http://127.0.0.1:9/x.zip"):
        fetch("http://127.0.0.1:9/x.zip", tmp_path / "x.zip", sha256=SHA256, mirror=mirror, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror"]


def test_unreachable_host_is_a_download_error(tmp_path):
    with pytest.raises(DownloadError, match="cannot connect"):
        fetch("http://127.0.0.1:9/x.zip", tmp_path / "x.zip", progress=False, timeout=5)


def test_no_progress_output_when_not_a_tty(tmp_path, server, capsys):
    fetch(server.url(), tmp_path / "a.tgz", sha256=SHA256, progress=True)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("progress", [True, False])
def test_progress_bar_on_a_tty_only_when_asked(tmp_path, server, monkeypatch, progress):
    fake = FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake)
    fetch(server.url(), tmp_path / "a.tgz", sha256=SHA256, progress=progress)
    assert ("a.tgz" in fake.getvalue()) == progress


def test_verify(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(PAYLOAD)
    verify(path, sha256=SHA256, md5=MD5)
    verify(path, sha256=SHA256.upper())
    assert file_digests(path, ("sha256", "md5")) == {"sha256": SHA256, "md5": MD5}
    with pytest.raises(ChecksumError, match=rf"f.bin: md5 mismatch: expected {'1' * 32}, got {MD5}"):
        verify(path, md5="1" * 32)
    with pytest.raises(ValueError, match="give sha256"):
        verify(path)
    with pytest.raises(ValueError, match="64 hex digits"):
        verify(path, sha256="abc")
    assert path.read_bytes() == PAYLOAD  # verify never deletes


def test_bad_checksum_argument_fails_before_any_transfer(tmp_path, server):
    with pytest.raises(ValueError):
        fetch(server.url(), tmp_path / "a.tgz", sha256="xyz", progress=False)
    assert server.requests == []


def test_stale_part_longer_than_the_file_is_restarted(tmp_path, server, monkeypatch):
    monkeypatch.setattr("circle_repro.data.download.time.sleep", lambda s: None)
    (tmp_path / "archive.tgz.part").write_bytes(PAYLOAD + b"extra bytes")
    fetch(server.url(), tmp_path / "archive.tgz", sha256=SHA256, progress=False)
    assert [r for _, r in server.requests] == [f"bytes={len(PAYLOAD) + 11}-", None]
    assert (tmp_path / "archive.tgz").read_bytes() == PAYLOAD
