"""Several OpenAI-compatible servers behind one run: two real llama_cpp
servers on 127.0.0.1, one URL where nothing listens, and one of the live
servers stopped mid-run. One run covers all three: the failover logic itself
is tested hermetically in test_openai_logic.py."""

import re
import subprocess
import sys
import time

import pytest

from tests.backends.servers import LlamaServer, free_port
from tests.test_end_to_end import assert_valid_corpus

pytestmark = pytest.mark.model
WORDS = 180  # short stories: a few paragraphs each


def args(urls, out, n):
    base = ["write", "-n", str(n), "--backend", "openai", "--model", "fabula-test", "--mode", "steer", "--words", str(WORDS)]
    base += ["--best-of", "1", "--concurrency", "4", "--out", str(out), "-q"]
    for u in urls:
        base += ["--base-url", u]
    return base


def per_server(stdout):
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^server (\S+): (\d+) requests", stdout, re.M)}


def answered(server):
    """Completions the server has answered: llama.cpp logs its timings once for each."""
    return server.log_text().count("total time =")


def test_requests_spread_over_live_servers_a_dead_url_warns_once_and_a_server_stopped_mid_run_costs_nothing(tmp_path):
    # One thread each: two servers share the machine's cores (2 on the CI machine).
    a, b = LlamaServer(alias="fabula-test", threads=1), LlamaServer(alias="fabula-test", threads=1)
    p = None
    try:
        dead = f"http://127.0.0.1:{free_port()}/v1"
        urls_file = tmp_path / "urls.txt"
        urls_file.write_text(f"# the fleet\n{b.url}\n{dead}\n")
        out = tmp_path / "c"
        cmd = [sys.executable, "-m", "fabula", *args([a.url], out, 2), "--base-urls", str(urls_file)]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None and answered(b) < 1:
            time.sleep(0.2)
        # b has answered a paragraph of its story and is at work on the next:
        # stopped now, that request fails and the story ends on a.
        b.stop()
        stdout, stderr = p.communicate(timeout=600)
    finally:
        if p is not None and p.poll() is None:
            p.kill()
        a.stop()
        b.stop()
    assert p.returncode == 0, stderr
    assert_valid_corpus(out, 2, WORDS)
    warnings = [ln for ln in stderr.splitlines() if ln.startswith("fabula: warning:")]
    assert len(warnings) == 1 and dead in warnings[0] and "connection refused" in warnings[0], stderr
    used = per_server(stdout)
    assert set(used) == {a.url, b.url}, stdout
    assert used[a.url] > used[b.url] > 0, stdout
    assert re.search(rf"^server {re.escape(b.url)}: \d+ requests, \d+ tokens, [1-9]\d* faults", stdout, re.M), stdout
