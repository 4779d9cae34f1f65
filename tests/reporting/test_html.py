"""The HTML report in a real headless Chromium: it renders with its plots, and
markup inside a story stays inert text."""

import shutil
import subprocess

import pytest

from tests.conftest import run_cli

EVIL = 'She read the note: <script>document.title="PWNED";document.body.innerHTML="gone"</script> and <b>laughed</b>.'


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Debian's chromium is not installed; `make test` installs it (apt-get install chromium)")
    return path


def test_report_renders_in_headless_chromium_and_story_markup_is_inert(tmp_path):
    stories = tmp_path / "stories"
    stories.mkdir()
    (stories / "000_evil.txt").write_text(EVIL + "\n\nKarl waited in Riga.\n")
    (stories / "001_plain.txt").write_text("Imanol walked through Tokyo in the evening and bought bread.\n")
    html = tmp_path / "r.html"
    r = run_cli("report", str(stories), "--no-semantic", "--html", str(html))
    assert r.returncode == 0, r.stderr
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium(), *flags, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "<title>fabula report</title>" in dom  # the story's script never ran
    assert "PWNED" in dom and "&lt;script&gt;" in dom  # ...it is shown as text
    assert "<b>laughed</b>" not in dom
    assert dom.count("<rect") >= 1 and "<svg" in dom  # the length histogram is drawn
    png = tmp_path / "shot.png"
    subprocess.run([chromium(), *flags, f"--screenshot={png}", "--window-size=1200,900", html.as_uri()], capture_output=True, timeout=120)
    assert png.stat().st_size > 5000  # a real picture, not an empty page
