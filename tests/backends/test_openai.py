"""The openai backend against a real OpenAI-compatible server on 127.0.0.1
(llama-cpp-python's server running the embedded GGUF), directly and through a
proxy that injects faults."""

import json
import os

import pytest

from tests.backends.servers import FaultProxy, LlamaServer, smollm2_path
from tests.conftest import plan_lines, run_cli
from tests.test_end_to_end import assert_valid_corpus

pytestmark = pytest.mark.model
KEY = "sk-fabula-test-0123456789abcdef"


@pytest.fixture(scope="module")
def server():
    s = LlamaServer(api_key=KEY)
    yield s
    s.stop()


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("FABULA_TEST_KEY", KEY)


def write(server_url, out, *extra, n=2):
    return run_cli(
        "write",
        "-n",
        str(n),
        "--backend",
        "openai",
        "--base-url",
        server_url,
        "--model",
        "fabula-test",
        "--api-key-env",
        "FABULA_TEST_KEY",
        "--out",
        str(out),
        *extra,
    )


def test_the_test_server_loads_the_model_into_no_amx_buffer(server):
    # llama_cpp.server uses the high-level Llama class, which fabula's AMX
    # guard cannot reach: only the build (Makefile) keeps it safe.
    lines = [ln for ln in server.log_text().splitlines() if "model buffer size" in ln]
    assert lines, server.log_text()[-2000:]
    assert not [ln for ln in lines if "AMX" in ln]


def test_beats_mode_writes_real_stories_through_the_server(server, env, tmp_path):
    out = tmp_path / "beats"
    r = write(server.url, out, "--mode", "beats", "--words", "250", "--concurrency", "2")
    assert r.returncode == 0, r.stderr
    recs = assert_valid_corpus(out, 2)
    assert all(x["backend"] == "openai" and x["model"] == "fabula-test" for x in recs)
    for where in [r.stdout.encode(), r.stderr.encode(), *(p.read_bytes() for p in out.rglob("*") if p.is_file())]:
        assert KEY.encode() not in where  # the key never leaves the Authorization header (index.npz is binary)


@pytest.fixture(scope="module")
def chat_server():
    s = LlamaServer(alias="smollm2", model=smollm2_path(), chat_format=None, threads=os.cpu_count())
    yield s
    s.stop()


def test_instruct_mode_with_a_real_chat_model_keeps_a_checked_story(chat_server, tmp_path):
    """Issue 26: the path a newcomer with vLLM or Ollama takes (instruct mode,
    the openai default), against a model that follows instructions:
    SmolLM2-135M-Instruct with its own chat template. Each card goes out as
    one chat request for a story; every draft is checked; one is kept."""
    from fabula.records import Card
    from fabula.write import instruction

    proxy = FaultProxy(chat_server.url, share=0.0)  # passes everything on; records the requests
    try:
        out = tmp_path / "chat"
        r = run_cli(
            "write", "-n", "1", "--pack", "bedtime", "--words", "280", "--seed", "3", "--backend", "openai",
            "--base-url", proxy.url, "--model", "smollm2", "--concurrency", "1", "--out", str(out), "-q",
        )  # fmt: skip
    finally:
        proxy.stop()
    assert r.returncode == 0, r.stderr
    (rec,) = [json.loads(x) for x in _lines(out / "corpus.jsonl")]
    assert run_cli("verify", str(out)).returncode == 0  # whole: its file, its hash, its plan line
    assert rec["backend"] == "openai" and rec["model"] == "smollm2"
    assert all(c["keep"] for c in rec["checks"]) and {c["check"] for c in rec["checks"]} >= {"length", "adherence", "cast"}
    cards = {json.loads(x)["id"]: x.decode() for x in plan_lines(out)}
    requests = [json.loads(b) for b in proxy.bodies]
    assert len(requests) >= 1 + sum(json.loads(x)["attempts"] for x in _lines(out / "rejects.jsonl"))
    asked = {q["messages"][0]["content"] for q in requests}
    for q in requests:  # one user message a draft: the card as a request for a story, with its sampling settings
        assert q["model"] == "smollm2" and [m["role"] for m in q["messages"]] == ["user"]
        assert q["max_tokens"] > 280 and q["temperature"] == rec["sampling"]["temperature"] and isinstance(q["seed"], int)
    kept = Card.from_dict(json.loads(cards[rec["card"]["id"]]))
    assert instruction(kept, 280) in asked  # the kept story's card, asked for as such
    assert kept.cast[next(iter(kept.cast))].first in (out / rec["file"]).read_text()
    for rej in map(json.loads, _lines(out / "rejects.jsonl")):
        assert rej["reason"] and rej["last_draft"].strip()


def _lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_wrong_key_wrong_model_and_no_server_fail_before_any_story(server, env, tmp_path, monkeypatch):
    monkeypatch.setenv("WRONG_KEY", "sk-wrong")
    cases = [
        (("--api-key-env", "WRONG_KEY"), "refused the API key in $WRONG_KEY (HTTP 401)"),
        (("--model", "no-such-model"), "model 'no-such-model' is not served"),
    ]
    for i, (args, expect) in enumerate(cases):
        out = tmp_path / f"c{i}"
        base = [
            "write",
            "-n",
            "1",
            "--backend",
            "openai",
            "--base-url",
            server.url,
            "--model",
            "fabula-test",
            "--api-key-env",
            "FABULA_TEST_KEY",
            "--out",
            str(out),
        ]
        r = run_cli(*base, *args)
        assert r.returncode == 2 and expect in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not out.exists()
        assert "sk-wrong" not in r.stderr and KEY not in r.stderr


def test_faults_are_retried_and_the_run_ends_with_exactly_n_stories(server, env, tmp_path):
    # One run through a real server and a real socket for each kind of fault;
    # the retry logic itself is tested hermetically in test_openai_logic.py.
    proxy = FaultProxy(server.url, share=0.3, stall=12.0)
    try:
        out = tmp_path / "faults"
        r = write(proxy.url, out, "--mode", "beats", "--words", "250", "--concurrency", "2", "--timeout", "8", "--max-retries", "8", n=4)
    finally:
        proxy.stop()
    assert r.returncode == 0, r.stderr
    assert_valid_corpus(out, 4)
    assert all(proxy.counts[k] >= 1 for k in FaultProxy.KINDS), proxy.counts
    injected = sum(proxy.counts[k] for k in FaultProxy.KINDS)
    line = next(x for x in r.stdout.splitlines() if x.startswith("retried requests"))
    assert int(line.split()[2].rstrip(",")) >= injected  # every injected fault was seen and retried


def test_stories_the_server_keeps_failing_are_recorded_and_retried_by_a_rerun(server, env, tmp_path):
    out = tmp_path / "down"
    proxy = FaultProxy(server.url, share=1.0, kinds=("500",))
    try:
        r = write(proxy.url, out, "--mode", "beats", "--words", "250", "--max-retries", "1", "-q")
    finally:
        proxy.stop()
    assert r.returncode == 0, r.stderr
    assert "failed 2 (the backend gave up on them; run the same command again to retry)" in r.stdout
    failed = [json.loads(x) for x in (out / "failed.jsonl").read_text().splitlines()]
    assert [f["reason"] for f in failed] == ["HTTP 500, 1 retries spent"] * 2
    assert not list((out / "stories").iterdir())
    again = write(server.url, out, "--mode", "beats", "--words", "250", "-q")  # the server is back
    assert again.returncode == 0, again.stderr
    recs = assert_valid_corpus(out, 2)
    assert sorted(x["card"]["id"] for x in recs) == sorted(f["card"]["id"] for f in failed)
