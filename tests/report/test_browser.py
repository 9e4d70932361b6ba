"""The HTML report in a real browser: headless Chromium (Debian's `chromium`) loads it cleanly, and every
in-page link of the rendered page lands on an element."""

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from circle_repro.config import Study
from circle_repro.report.build import build_report

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@needs_chromium
def test_report_renders_without_console_errors(tmp_path, demo_params, metrics_files):
    page = build_report(Study.of(demo_params), metrics_files, tmp_path / "reports")[1]
    screenshot = tmp_path / "report.png"
    result = _chromium(tmp_path, "--window-size=1200,2000", f"--screenshot={screenshot}", page.as_uri())
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
    pixels = np.asarray(Image.open(screenshot).convert("L"))
    assert pixels.std() > 10, "the screenshot is blank"
    assert (pixels < 128).mean() > 0.01, "no text or figures drawn"


@needs_chromium
def test_every_internal_link_resolves_in_the_rendered_page(tmp_path, demo_params, metrics_files):
    page = build_report(Study.of(demo_params), metrics_files, tmp_path / "reports")[1]
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    targets = re.findall(r'<a href="#([^"]+)"', dom)
    ids = set(re.findall(r' id="([^"]+)"', dom))
    assert targets and set(targets) <= ids, sorted(set(targets) - ids)
