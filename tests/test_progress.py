"""Progress in a log file: plain lines at most every interval and a total, no carriage returns; a bar on a terminal."""

import io

from PIL import Image

from circle_repro.data.image_store import ImageStore
from circle_repro.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_plain_lines_and_a_total():
    log = io.StringIO()
    with Progress("embedding", 200, interval_s=0.0, stream=log) as progress:
        progress.update(50)
        progress.update(150)
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("embedding: 50 of 200 images (25 %), ")
    assert lines[1].startswith("embedding: 200 of 200 images (100 %), ")
    assert lines[2].startswith("embedding: 200 images in ") and len(lines) == 3
    assert "\r" not in log.getvalue()


def test_a_step_shorter_than_the_interval_prints_nothing_and_an_unknown_total_is_left_out():
    log = io.StringIO()
    with Progress("storing", interval_s=3600.0, stream=log) as progress:
        progress.update(5)
    assert log.getvalue() == "" and progress.done == 5
    with Progress("storing", interval_s=0.0, stream=log) as progress:
        progress.update(5)
    assert log.getvalue().splitlines()[0].startswith("storing: 5 images, ")


def test_a_terminal_gets_a_bar_and_a_disabled_progress_nothing():
    terminal = _Terminal()
    with Progress("embedding", 10, interval_s=0.0, stream=terminal) as progress:
        progress.update(10)
    assert (
        "embedding" in terminal.getvalue()
        and "\r" in terminal.getvalue()
        and " of 10 images" not in terminal.getvalue()
    )
    quiet = io.StringIO()
    with Progress("embedding", 10, interval_s=0.0, stream=quiet, enabled=False) as progress:
        progress.update(10)
    assert quiet.getvalue() == "" and progress.done == 10


def test_the_image_store_counts_every_image_offered(tmp_path):
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    log = io.StringIO()
    with (
        Progress("storing", 3, interval_s=0.0, stream=log) as progress,
        ImageStore(tmp_path / "out", progress=progress) as store,
    ):
        store.add("a.png", png.getvalue(), "a")
        store.add("b.png", png.getvalue(), "b")
        store.add("c.png", b"not an image", "c")  # skipped, but counted as done
        store.commit()
    assert progress.done == 3 and "storing: 3 of 3 images (100 %)" in log.getvalue()
