"""The openai backend's retry, give-up and failover logic, hermetic: the run's
client talks to an ``httpx.MockTransport`` that answers like one or several
servers and injects every kind of fault. The real-server tests
(test_openai.py, test_many_servers.py) keep one run per behaviour."""

import asyncio
import json
import random

import httpx
import pytest

from fabula.backends.fake import filler
from fabula.backends.openai import RETRY_AFTER_CAP, OpenAIBackend
from fabula.pipeline import write_corpus
from fabula.store import Store
from fabula.write import WriteSettings

A, B = "http://a.test/v1", "http://b.test/v1"
KINDS = ("500", "429", "timeout", "reset", "garbage", "empty")


class Servers:
    """What the servers answer: a share of POSTs fail with the next kind of
    KINDS in turn; a URL in ``down`` refuses connections."""

    def __init__(self, share=0.0, kinds=KINDS, seed=7):
        self.share, self.kinds, self.rng, self.turn = share, kinds, random.Random(seed), 0
        self.counts = {k: 0 for k in (*KINDS, "passed", "refused")}
        self.answered = {A: 0, B: 0}
        self.down: set[str] = set()
        self.down_after: dict[str, int] = {}  # url -> goes down once it has answered this many

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.002)  # requests overlap, as on a network: the least busy server gets the next
        root = str(request.url).rsplit("/", 1)[0]
        if root in self.down or self.answered[root] >= self.down_after.get(root, 1 << 30):
            self.counts["refused"] += 1
            raise httpx.ConnectError("connection refused", request=request)
        if self.rng.random() < self.share:
            kind = self.kinds[self.turn % len(self.kinds)]
            self.turn += 1
            self.counts[kind] += 1
            if kind == "timeout":
                raise httpx.ReadTimeout("timed out", request=request)
            if kind == "reset":
                raise httpx.RemoteProtocolError("peer closed connection", request=request)
            if kind == "429":
                return httpx.Response(429, headers={"Retry-After": "0.01"}, json={"error": {"message": "slow down"}})
            if kind == "garbage":
                return httpx.Response(200, content=b"<html>proxy error</html>")
            if kind == "empty":
                return httpx.Response(200, content=b"")
            return httpx.Response(500, json={"error": {"message": "injected"}})
        body = json.loads(request.content)
        rng = random.Random(f"{body['seed']}:{body['prompt'][-100:]}")
        text = " " + filler(rng, int(body["max_tokens"] * 0.45))
        self.counts["passed"] += 1
        self.answered[root] += 1
        return httpx.Response(200, json={"choices": [{"text": text, "finish_reason": "stop"}], "usage": {"completion_tokens": len(text.split())}})


def backend(servers, urls=(A,), **kw):
    kw = {"max_retries": 8, "backoff": 0.001, "concurrency": 4, **kw}
    return OpenAIBackend(list(urls), "m", transport=httpx.MockTransport(servers), **kw)


def write(tmp_path, spy, be, n):
    store = Store.open(tmp_path / "c", {"pack": "spy", "seed": 1})
    return store, write_corpus(store, spy, be, n, 1, WriteSettings(words=300, mode="beats"), max_attempts=3)


def test_every_kind_of_fault_is_retried_and_the_run_ends_with_exactly_n_stories(tmp_path, spy):
    servers = Servers(share=0.3)
    store, s = write(tmp_path, spy, backend(servers), 6)
    assert s.written == 6 and s.failed == 0 and len(store.records()) == 6
    injected = sum(servers.counts[k] for k in KINDS)
    assert all(servers.counts[k] >= 1 for k in KINDS), servers.counts
    assert s.retries == injected  # every fault seen, and retried once each


def test_a_request_past_its_retry_budget_fails_its_job_and_a_rerun_writes_it(tmp_path, spy):
    store, s = write(tmp_path, spy, backend(Servers(share=1.0, kinds=("500",)), max_retries=1), 2)
    assert s.written == 0 and s.failed == 2
    failed = [json.loads(x) for x in (store.root / "failed.jsonl").read_text().splitlines()]
    assert [f["reason"] for f in failed] == ["HTTP 500, 1 retries spent"] * 2
    from fabula.store import unlock_folder

    unlock_folder(store.root)
    store, s = write(tmp_path, spy, backend(Servers()), 2)  # the server is back
    assert s.written == 2
    assert sorted(r["card"]["id"] for r in store.records()) == sorted(f["card"]["id"] for f in failed)


def test_a_server_that_goes_down_mid_run_hands_its_requests_to_the_other(tmp_path, spy):
    servers = Servers()
    servers.down_after[B] = 5
    be = backend(servers, urls=(A, B), max_retries=3)
    store, s = write(tmp_path, spy, be, 4)
    assert s.written == 4 and s.failed == 0
    used = {x.url: x for x in be.servers}
    assert used[A].requests > used[B].requests == 5 and used[B].faults >= 1
    assert servers.counts["refused"] == used[B].faults
    assert any(line.startswith(f"server {B}: 5 requests") for line in be.usage())


def test_retry_after_is_honoured_and_capped_and_a_date_falls_back_to_backoff():
    be = OpenAIBackend(A, "m", backoff=0.5)
    assert be._delay(0, "2") == 2.0
    assert be._delay(0, "9999") == RETRY_AFTER_CAP
    assert 0 <= be._delay(3, "Wed, 21 Oct 2026 07:28:00 GMT") <= 0.5 * 2**3
    assert 0 <= be._delay(1, None) <= 1.0


def test_a_request_the_server_rejects_ends_the_run_with_its_reason(tmp_path, spy):
    def handler(request):
        return httpx.Response(400, json={"error": {"message": "max_tokens too large"}})

    be = OpenAIBackend(A, "m", transport=httpx.MockTransport(handler))
    from fabula.errors import BackendError

    with pytest.raises(BackendError, match=r"HTTP 400: max_tokens too large"):
        write(tmp_path, spy, be, 1)


def test_the_key_goes_only_into_the_authorization_header(tmp_path, spy, monkeypatch):
    """Every request carries the key as a bearer token; the folder, the
    records and the errors never hold it; a refused key is one line naming the
    variable, not the key."""
    key = "sk-fabula-test-0123456789"
    monkeypatch.setenv("FABULA_KEY", key)
    seen = []
    servers = Servers()

    async def handler(request):
        seen.append(request.headers.get("authorization"))
        if request.method == "GET":  # preflight: /models
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        return await servers(request)

    be = OpenAIBackend(A, "m", api_key_env="FABULA_KEY", transport=httpx.MockTransport(handler))
    be.preflight()
    store, s = write(tmp_path, spy, be, 2)
    assert s.written == 2 and seen and set(seen) == {f"Bearer {key}"}
    for path in store.root.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    refuse = OpenAIBackend(A, "m", api_key_env="FABULA_KEY", transport=httpx.MockTransport(lambda r: httpx.Response(401, json={"error": "bad key"})))
    from fabula.errors import BackendError

    with pytest.raises(BackendError) as e:
        refuse.preflight()
    assert "refused the API key in $FABULA_KEY (HTTP 401)" in str(e.value) and key not in str(e.value)


def test_a_run_wider_than_one_pool_keeps_every_slot_busy_and_no_more():
    """Past POOL, the jobs spread over several clients: every job comes back
    once, and exactly ``concurrency`` requests are in flight at the peak."""
    from fabula.backends.base import OneShot, Request
    from fabula.backends.openai import POOL

    width, load = 0, 0
    seen: list[int] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal width, load
        load += 1
        width = max(width, load)
        await asyncio.sleep(0.005)
        load -= 1
        seen.append(json.loads(request.content)["seed"])
        return httpx.Response(200, json={"choices": [{"text": "x", "finish_reason": "stop"}], "usage": {"completion_tokens": 1}})

    concurrency = 2 * POOL + 5
    jobs = [OneShot(Request(prompt="p", max_tokens=4, seed=i)) for i in range(4 * concurrency)]
    back = list(OpenAIBackend(A, "m", concurrency=concurrency, transport=httpx.MockTransport(answer)).run(iter(jobs)))
    assert sorted(j.result.text for j in back) == ["x"] * len(jobs) and {id(j) for j in back} == {id(j) for j in jobs}
    assert sorted(seen) == list(range(len(jobs)))
    assert width == concurrency
