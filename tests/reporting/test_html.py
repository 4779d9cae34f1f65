"""The HTML report in a real headless Chromium: it renders with its plots, and
markup inside a story stays inert text."""

import re
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


FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_report_renders_in_headless_chromium_and_story_markup_is_inert(tmp_path):
    stories = tmp_path / "stories"
    stories.mkdir()
    (stories / "000_evil.txt").write_text(EVIL + "\n\nKarl waited in Riga.\n")
    (stories / "001_plain.txt").write_text("Imanol walked through Tokyo in the evening and bought bread.\n")
    html = tmp_path / "r.html"
    r = run_cli("report", str(stories), "--no-semantic", "--html", str(html))
    assert r.returncode == 0, r.stderr
    flags = [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium(), *flags, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "<title>fabula report</title>" in dom  # the story's script never ran
    assert "PWNED" in dom and "&lt;script&gt;" in dom  # ...it is shown as text
    assert "<b>laughed</b>" not in dom
    assert "<script" not in html.read_text()  # the report itself runs nothing


def test_report_on_two_folders_draws_every_folder_and_logs_no_console_error(tmp_path):
    """A fabula corpus (fake backend) beside a folder of plain stories given as
    the reference: every plot is drawn, names both folders, the browser logs
    no console error, and the screenshot is a picture, not a blank page."""
    from PIL import Image

    corpus = tmp_path / "tales"
    r = run_cli("write", "-n", "6", "--seed", "3", "--backend", "fake", "--out", str(corpus))
    assert r.returncode == 0, r.stderr
    human = tmp_path / "humans"
    human.mkdir()
    for i, town in enumerate(["Riga", "Porto", "Hanoi"]):
        (human / f"{i}.txt").write_text(f"Agnieszka waited in {town} for the ferry. " * (20 + 9 * i) + "\n")
    html = tmp_path / "r.html"
    r = run_cli("report", str(corpus), "--reference", str(human), "--no-semantic", "--html", str(html))
    assert r.returncode == 0, r.stderr
    flags = [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    run = subprocess.run([chromium(), *flags, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120)
    assert "CONSOLE" not in run.stderr, [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    svgs = re.findall(r"<svg.*?</svg>", run.stdout, flags=re.S)
    assert len(svgs) == 3, len(svgs)  # metrics, lengths, recurrence (no map without the semantic metrics)
    for svg in svgs:
        assert "tales" in svg and "humans" in svg  # every folder named in every plot
    assert "humans (reference)" in run.stdout
    png = tmp_path / "shot.png"
    subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={png}", "--window-size=1200,900", html.as_uri()],
        capture_output=True,
        timeout=120,
    )
    img = Image.open(png).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20)
    assert len(colours) > 50  # bars, text, antialiasing: a drawn page
    white = max(colours)[0] / (img.width * img.height)
    assert white < 0.95, white
