"""The HTML report in a real browser: headless Chromium (Debian's `chromium`) loads it cleanly."""

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from circle_repro.report.build import build_report

CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_renders_without_console_errors(tmp_path, repo_params, metrics_files):
    page = build_report(repo_params, metrics_files, tmp_path / "reports")[1]
    screenshot = tmp_path / "report.png"
    result = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
            "--window-size=1200,2000", f"--screenshot={screenshot}", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
    pixels = np.asarray(Image.open(screenshot).convert("L"))
    assert pixels.std() > 10, "the screenshot is blank"
    assert (pixels < 128).mean() > 0.01, "no text or figures drawn"
