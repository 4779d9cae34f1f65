"""The openai backend's retry, give-up and failover logic, on bare local HTTP
servers (tests/backends/servers.LocalHTTP) that answer like one or two model
servers and inject every kind of fault at once, with no model behind them. The
model-server tests (test_openai.py, test_many_servers.py) keep one run per
behaviour."""

import asyncio
import json
import random

import pytest

from fabula.backends.fake import filler
from fabula.backends.openai import RETRY_AFTER_CAP, OpenAIBackend
from fabula.pipeline import write_corpus
from fabula.store import Store
from fabula.write import WriteSettings
from tests.backends.servers import LocalHTTP, free_port

KINDS = ("500", "429", "timeout", "reset", "garbage", "empty")
TIMEOUT = 0.3  # seconds: the client's timeout in these tests; a "timeout" fault stalls past it


def ok(payload) -> tuple[int, dict, bytes]:
    return 200, {}, json.dumps(payload).encode()


class Servers:
    """Two servers, a and b: a share of POSTs fail with the next kind of KINDS
    in turn; a server past ``down_after`` answers drops every connection."""

    def __init__(self, share=0.0, kinds=KINDS, seed=7):
        self.share, self.kinds, self.rng, self.turn = share, kinds, random.Random(seed), 0
        self.counts = {k: 0 for k in (*KINDS, "passed", "dropped")}
        self.answered = {"a": 0, "b": 0}
        self.down_after: dict[str, int] = {}  # server -> drops connections once it has answered this many
        self.http = {name: LocalHTTP(lambda *r, name=name: self.answer(name, *r)) for name in ("a", "b")}
        self.a, self.b = self.http["a"].url, self.http["b"].url

    async def answer(self, name, method, path, headers, body):
        await asyncio.sleep(0.002)  # requests overlap, as on a network: the least busy server gets the next
        if self.answered[name] >= self.down_after.get(name, 1 << 30):
            self.counts["dropped"] += 1
            return None
        if self.rng.random() < self.share:
            kind = self.kinds[self.turn % len(self.kinds)]
            self.turn += 1
            self.counts[kind] += 1
            if kind == "timeout":
                await asyncio.sleep(TIMEOUT * 2)
                return None
            if kind == "reset":
                return None
            if kind == "429":
                return 429, {"Retry-After": "0.01"}, b'{"error": {"message": "slow down"}}'
            if kind == "garbage":
                return 200, {}, b"<html>proxy error</html>"
            if kind == "empty":
                return 200, {}, b""
            return 500, {}, b'{"error": {"message": "injected"}}'
        req = json.loads(body)
        rng = random.Random(f"{req['seed']}:{req['prompt'][-100:]}")
        text = " " + filler(rng, int(req["max_tokens"] * 0.45))
        self.counts["passed"] += 1
        self.answered[name] += 1
        return ok({"choices": [{"text": text, "finish_reason": "stop"}], "usage": {"completion_tokens": len(text.split())}})

    def stop(self):
        for h in self.http.values():
            h.stop()


@pytest.fixture
def servers():
    made: list[Servers] = []

    def make(**kw):
        made.append(Servers(**kw))
        return made[-1]

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def serve():
    """serve(handler) -> the URL of a LocalHTTP answering with it."""
    made: list[LocalHTTP] = []

    def make(handler):
        made.append(LocalHTTP(handler))
        return made[-1].url

    yield make
    for h in made:
        h.stop()


def backend(urls, **kw):
    kw = {"max_retries": 8, "backoff": 0.001, "concurrency": 4, "timeout": TIMEOUT, **kw}
    return OpenAIBackend(list(urls), "m", **kw)


def write(tmp_path, spy, be, n):
    store = Store.open(tmp_path / "c", {"pack": "spy", "seed": 1})
    return store, write_corpus(store, spy, be, n, 1, WriteSettings(words=300, mode="beats"), max_attempts=3)


def test_every_kind_of_fault_is_retried_and_the_run_ends_with_exactly_n_stories(tmp_path, spy, servers):
    servers = servers(share=0.3)
    store, s = write(tmp_path, spy, backend([servers.a]), 6)
    assert s.written == 6 and s.failed == 0 and len(store.records()) == 6
    injected = sum(servers.counts[k] for k in KINDS)
    assert all(servers.counts[k] >= 1 for k in KINDS), servers.counts
    assert s.retries == injected  # every fault seen, and retried once each


def test_a_request_past_its_retry_budget_fails_its_job_and_a_rerun_writes_it(tmp_path, spy, servers):
    store, s = write(tmp_path, spy, backend([servers(share=1.0, kinds=("500",)).a], max_retries=1), 2)
    assert s.written == 0 and s.failed == 2
    failed = [json.loads(x) for x in (store.root / "failed.jsonl").read_text().splitlines()]
    assert [f["reason"] for f in failed] == ["HTTP 500, 1 retries spent"] * 2
    from fabula.store import unlock_folder

    unlock_folder(store.root)
    store, s = write(tmp_path, spy, backend([servers().a]), 2)  # the server is back
    assert s.written == 2
    assert sorted(r["card"]["id"] for r in store.records()) == sorted(f["card"]["id"] for f in failed)


def test_a_server_that_goes_down_mid_run_hands_its_requests_to_the_other(tmp_path, spy, servers):
    servers = servers()
    servers.down_after["b"] = 5
    be = backend([servers.a, servers.b], max_retries=3)
    store, s = write(tmp_path, spy, be, 4)
    assert s.written == 4 and s.failed == 0
    used = {x.url: x for x in be.servers}
    assert used[servers.a].requests > used[servers.b].requests == 5 and used[servers.b].faults >= 1
    assert servers.counts["dropped"] == used[servers.b].faults
    assert any(line.startswith(f"server {servers.b}: 5 requests") for line in be.usage())


def test_a_server_nobody_listens_on_is_a_connection_error_and_its_requests_go_to_the_other(tmp_path, spy, servers):
    servers = servers()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    be = backend([dead, servers.a], max_retries=5)
    store, s = write(tmp_path, spy, be, 2)
    assert s.written == 2 and s.failed == 0
    used = {x.url: x for x in be.servers}
    assert used[dead].requests == 0 and used[dead].faults >= 1 and used[servers.a].requests == servers.counts["passed"]


def test_retry_after_is_honoured_and_capped_and_a_date_falls_back_to_backoff():
    be = OpenAIBackend("http://127.0.0.1:9/v1", "m", backoff=0.5)
    assert be._delay(0, "2") == 2.0
    assert be._delay(0, "9999") == RETRY_AFTER_CAP
    assert 0 <= be._delay(3, "Wed, 21 Oct 2026 07:28:00 GMT") <= 0.5 * 2**3
    assert 0 <= be._delay(1, None) <= 1.0


def test_a_request_the_server_rejects_ends_the_run_with_its_reason(tmp_path, spy, serve):
    async def handler(method, path, headers, body):
        return 400, {}, b'{"error": {"message": "max_tokens too large"}}'

    be = backend([serve(handler)])
    from fabula.errors import BackendError

    with pytest.raises(BackendError, match=r"HTTP 400: max_tokens too large"):
        write(tmp_path, spy, be, 1)


def test_the_key_goes_only_into_the_authorization_header(tmp_path, spy, monkeypatch, servers, serve):
    """Every request carries the key as a bearer token; the folder, the
    records and the errors never hold it; a refused key is one line naming the
    variable, not the key."""
    key = "sk-fabula-test-0123456789"
    monkeypatch.setenv("FABULA_KEY", key)
    seen = []
    servers = servers()

    async def handler(method, path, headers, body):
        seen.append(headers.get("authorization"))
        if method == "GET":  # preflight: /models
            return ok({"data": [{"id": "m"}]})
        return await servers.answer("a", method, path, headers, body)

    be = backend([serve(handler)], api_key_env="FABULA_KEY")
    be.preflight()
    store, s = write(tmp_path, spy, be, 2)
    assert s.written == 2 and seen and set(seen) == {f"Bearer {key}"}
    for path in store.root.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path

    async def refuse(method, path, headers, body):
        return 401, {}, b'{"error": "bad key"}'

    from fabula.errors import BackendError

    with pytest.raises(BackendError) as e:
        backend([serve(refuse)], api_key_env="FABULA_KEY").preflight()
    assert "refused the API key in $FABULA_KEY (HTTP 401)" in str(e.value) and key not in str(e.value)


def test_preflight_names_a_url_where_nothing_listens_and_one_that_is_not_the_api_root(serve):
    from fabula.errors import BackendError

    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(BackendError, match=r"no server answers at .*connection refused"):
        backend([dead]).preflight()

    async def missing(method, path, headers, body):
        return 404, {}, b"{}"

    with pytest.raises(BackendError, match=r"/models does not exist \(HTTP 404\); --base-url must be the API root"):
        backend([serve(missing)]).preflight()


def test_a_wide_run_keeps_every_slot_busy_and_no_more(serve):
    """Every job comes back once, and exactly ``concurrency`` requests are in
    flight at the peak."""
    from fabula.backends.base import OneShot, Request

    concurrency = 69
    width, load = 0, 0
    seen: list[int] = []
    full = asyncio.Event()  # the server holds the first requests until all slots are in flight (or 5 s pass)

    async def answer(method, path, headers, body):
        nonlocal width, load
        load += 1
        width = max(width, load)
        if load == concurrency:
            full.set()
        try:
            await asyncio.wait_for(full.wait(), 5.0)
        except TimeoutError:
            pass
        await asyncio.sleep(0.002)
        load -= 1
        seen.append(json.loads(body)["seed"])
        return ok({"choices": [{"text": "x", "finish_reason": "stop"}], "usage": {"completion_tokens": 1}})

    jobs = [OneShot(Request(prompt="p", max_tokens=4, seed=i)) for i in range(4 * concurrency)]
    back = list(backend([serve(answer)], concurrency=concurrency).run(iter(jobs)))
    assert sorted(j.result.text for j in back) == ["x"] * len(jobs) and {id(j) for j in back} == {id(j) for j in jobs}
    assert sorted(seen) == list(range(len(jobs)))
    assert width == concurrency


def test_a_proxy_named_in_the_environment_carries_the_requests_unless_no_proxy_names_the_host(tmp_path, spy, serve, monkeypatch):
    from fabula.backends.openai import proxy_for

    paths: list[str] = []

    async def proxy(method, path, headers, body):  # a forward proxy answering for the server behind it
        paths.append(path)
        req = json.loads(body)
        text = " " + filler(random.Random(req["seed"]), int(req["max_tokens"] * 0.45))
        return ok({"choices": [{"text": text, "finish_reason": "stop"}], "usage": {"completion_tokens": len(text.split())}})

    url = serve(proxy).removesuffix("/v1")
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", url)
    store, s = write(tmp_path, spy, backend(["http://model.test/v1"]), 2)  # a host no resolver knows: only the proxy can answer
    assert s.written == 2 and paths and all(p == "http://model.test/v1/completions" for p in paths)
    monkeypatch.setenv("NO_PROXY", "model.test")
    assert proxy_for("http://model.test/v1") is None and proxy_for("http://other.test/v1") == url
    monkeypatch.setenv("ALL_PROXY", "http://all.test:3128")
    assert proxy_for("https://api.test/v1") == "http://all.test:3128"
