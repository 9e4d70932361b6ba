"""`circle-repro data prepare` on a user's mistakes: exit 2 and one paragraph naming the file and the fix."""

import socket
import urllib.error
import urllib.request

from fixtures.face import build_faces_emore
from fixtures.formats import truncate

from circle_repro.cli import main
from support import REPO_ROOT

PARAMS = str(REPO_ROOT / "params.yaml")


def _prepare(capsys, dataset, raw, out):
    code = main(["data", "prepare", dataset, "--raw", str(raw), "--out", str(out), "--params", PARAMS])
    return code, capsys.readouterr().err


def _one_paragraph_without_traceback(error: str) -> None:
    assert "Traceback" not in error and error.strip() and "\n\n" not in error.strip(), error


def _no_network(monkeypatch):
    """A compute node without internet: every connection fails as the DNS lookup does there."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_cub200_with_no_file_and_no_network_names_the_archive_and_the_fix(tmp_path, capsys, monkeypatch):
    _no_network(monkeypatch)
    code, error = _prepare(capsys, "cub200", tmp_path / "raw", tmp_path / "out")
    assert code == 2
    _one_paragraph_without_traceback(error)
    assert "CUB_200_2011.tgz" in error and str(tmp_path / "raw") in error, error
    assert "circle-repro data fetch cub200" in error and "circle-repro data info cub200" in error, error
    assert not (tmp_path / "out").exists()


def test_cub200_with_a_wrong_file_placed_as_its_archive_names_the_file(tmp_path, capsys, monkeypatch):
    _no_network(monkeypatch)  # a placed file is checked, never replaced by a download
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "CUB_200_2011.tgz").write_bytes(b"<html>this is a login page, not an archive</html>")
    code, error = _prepare(capsys, "cub200", raw, tmp_path / "out")
    assert code == 2
    _one_paragraph_without_traceback(error)
    assert "CUB_200_2011.tgz: size in bytes mismatch" in error and "replace" in error, error
    assert (raw / "CUB_200_2011.tgz").read_bytes().startswith(b"<html>"), "the placed file is left as it was"
    assert not (tmp_path / "out").exists()


def test_ms1mv2_with_a_truncated_rec_names_the_pack(tmp_path, capsys):
    raw = tmp_path / "raw"
    pack = build_faces_emore(raw / "faces_emore")
    truncate(pack.rec.rec, 0.6)
    code, error = _prepare(capsys, "ms1mv2", raw, tmp_path / "out")
    assert code == 2
    _one_paragraph_without_traceback(error)
    assert "train.rec" in error, error
    assert not (tmp_path / "out").exists()
