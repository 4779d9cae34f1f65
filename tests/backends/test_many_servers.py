"""Several OpenAI-compatible servers behind one run: two real llama_cpp
servers on 127.0.0.1 and one URL where nothing listens."""

import re
import subprocess
import sys
import time

import pytest

from tests.backends.servers import LlamaServer, free_port
from tests.conftest import run_cli
from tests.test_end_to_end import assert_valid_corpus

pytestmark = pytest.mark.model
WORDS = 180  # short stories: the failover logic is tested hermetically in test_openai_logic.py


@pytest.fixture(scope="module")
def servers():
    # One thread each: two servers share the machine's cores (2 on the CI machine).
    a, b = LlamaServer(alias="fabula-test", threads=1), LlamaServer(alias="fabula-test", threads=1)
    yield a, b
    a.stop()
    b.stop()


def args(urls, out, n):
    base = [
        "write",
        "-n",
        str(n),
        "--backend",
        "openai",
        "--model",
        "fabula-test",
        "--mode",
        "steer",
        "--words",
        str(WORDS),
        "--best-of",
        "1",
        "--concurrency",
        "4",
        "--out",
        str(out),
        "-q",
    ]
    for u in urls:
        base += ["--base-url", u]
    return base


def per_server(stdout):
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^server (\S+): (\d+) requests", stdout, re.M)}


def test_requests_spread_over_the_live_servers_and_a_dead_url_is_one_warning(servers, tmp_path):
    a, b = servers
    dead = f"http://127.0.0.1:{free_port()}/v1"
    urls_file = tmp_path / "urls.txt"
    urls_file.write_text(f"# the fleet\n{b.url}\n{dead}\n")
    out = tmp_path / "c"
    r = run_cli(*args([a.url], out, 3), "--base-urls", str(urls_file))
    assert r.returncode == 0, r.stderr
    assert_valid_corpus(out, 3, WORDS)
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("fabula: warning:")]
    assert len(warnings) == 1 and dead in warnings[0] and "connection refused" in warnings[0]
    used = per_server(r.stdout)
    assert set(used) == {a.url, b.url} and all(n > 0 for n in used.values()), r.stdout


def test_a_server_stopped_mid_run_does_not_stop_the_run(servers, tmp_path):
    a, b = servers[0], LlamaServer(alias="fabula-test", threads=1)  # its own second server: this test stops it
    out = tmp_path / "c"
    p = subprocess.Popen([sys.executable, "-m", "fabula", *args([a.url, b.url], out, 4)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not ((out / "corpus.jsonl").exists() and (out / "corpus.jsonl").read_text().strip()):
        time.sleep(0.5)
    b.stop()  # one story is in: the other server carries the rest
    try:
        stdout, stderr = p.communicate(timeout=600)
    finally:
        b.stop()
    assert p.returncode == 0, stderr
    assert_valid_corpus(out, 4, WORDS)
    used = per_server(stdout)
    assert used[a.url] > used[b.url] > 0, stdout
    assert re.search(rf"^server {re.escape(b.url)}: \d+ requests, \d+ tokens, [1-9]\d* faults", stdout, re.M), stdout
