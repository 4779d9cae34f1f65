"""The openai backend against a real OpenAI-compatible server on 127.0.0.1
(llama-cpp-python's server running the embedded GGUF), directly and through a
proxy that injects faults."""

import json

import pytest

from tests.backends.servers import FaultProxy, LlamaServer
from tests.conftest import run_cli
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


def test_instruct_mode_asks_the_chat_endpoint_and_checks_the_answer(server, env, tmp_path):
    out = tmp_path / "instruct"
    r = write(server.url, out, "--words", "150", "--max-attempts", "2", "-q", n=1)
    # A 270M base model rarely follows a whole instruction: every draft is either
    # a checked story or a reject with its reason - never lost, never unchecked.
    recs = [json.loads(x) for x in (out / "corpus.jsonl").read_text().splitlines()] if (out / "corpus.jsonl").exists() else []
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()] if (out / "rejects.jsonl").exists() else []
    assert recs or rejects, r.stderr
    for rec in recs:
        assert all(c["keep"] for c in rec["checks"])
    for rej in rejects:
        assert rej["reason"] and rej["last_draft"].strip()
    assert KEY not in r.stdout + r.stderr


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
