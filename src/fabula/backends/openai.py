"""The openai backend: any OpenAI-compatible server (vLLM, llama.cpp's
llama-server, llama-cpp-python's server, Ollama, hosted APIs).

Up to ``concurrency`` jobs run at once on one asyncio loop, so a server with
continuous batching stays full; each job's requests (one per paragraph in beats
mode, one per story in instruct mode) go in order. Faults - 429 and 5xx
answers, timeouts, refused or reset connections, malformed or empty bodies -
are retried with exponential backoff and full jitter, honouring Retry-After;
a request that still fails after ``max_retries`` fails its job with a reason,
and the pipeline records it and goes on.

Many servers: ``base_url`` may be a list. Each request goes to the healthy
server with the fewest requests in flight; a server that fails its preflight
is skipped with a warning while at least one other answers; one that fails
``FAILS_TO_REST`` requests in a row rests for ``REST`` seconds (its requests
go elsewhere) and is then tried again. ``usage()`` says what each server did.

The API key is read from the environment variable named by ``api_key_env``
and only ever placed in the Authorization header: never in records, progress
output or error messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from fabula.backends.base import Backend, Completion, J, JobSource, Request, merge, now, split
from fabula.errors import BackendError, FabulaWarning, MissingDependency, UsageError

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
BACKOFF_BASE = 0.5  # seconds; attempt k waits up to base * 2**k
BACKOFF_CAP = 20.0  # seconds
RETRY_AFTER_CAP = 60.0  # seconds; a server asking for longer is waited on no longer
FAILS_TO_REST = 3  # faults in a row before a server (of several) is set aside
REST = 30.0  # seconds a failing server is set aside before it is tried again


@dataclass
class _Server:
    url: str
    proxy: str | None = None  # from the environment (proxy_for)
    in_flight: int = 0
    fails: int = 0  # faults in a row
    resting_until: float = 0.0
    requests: int = 0  # answered
    tokens: int = 0
    faults: int = 0


class RequestFailed(Exception):
    """A request that kept failing through the whole retry budget."""


@dataclass(frozen=True)
class _Answer:
    """One HTTP answer, read whole."""

    status: int
    body: bytes
    reason: str = ""
    retry_after: str | None = None

    def json(self):
        return json.loads(self.body)


def _aiohttp():
    try:
        import aiohttp
    except ImportError:
        raise MissingDependency("the openai backend", "aiohttp") from None
    return aiohttp


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (HTTP_PROXY, HTTPS_PROXY,
    ALL_PROXY, NO_PROXY, as curl reads them), or None. Looked up once per
    server: aiohttp's trust_env looks it up, and reads ~/.netrc, at every
    request (~15 % of the writer's time at a few hundred requests a second)."""
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all") or None


async def _send(session, method: str, url: str, headers: dict, body: bytes | None = None, proxy: str | None = None) -> _Answer:
    async with session.request(method, url, data=body, headers=headers, proxy=proxy) as r:
        return _Answer(r.status, await r.read(), r.reason or "", r.headers.get("Retry-After"))


class OpenAIBackend(Backend):
    chat = True
    checks_apart = True  # the servers do the model's work elsewhere

    def __init__(
        self,
        base_url: str | Sequence[str],
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff: float = BACKOFF_BASE,
    ):
        """``timeout``: seconds a connection may take to open, and a request
        to go between two reads of its answer."""
        super().__init__(id="openai", model=model)
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls or urls == [""]:
            raise UsageError("--backend openai needs --base-url URL (the API root, e.g. http://127.0.0.1:8000/v1)")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise UsageError(f"--base-url {url!r} is not an http(s) URL; give the API root, e.g. http://127.0.0.1:8000/v1")
        if not model:
            raise UsageError("--backend openai needs --model NAME (the id the server lists at /models)")
        self.servers = [_Server(u.rstrip("/"), proxy_for(u)) for u in dict.fromkeys(urls)]
        self.base_url = self.servers[0].url
        self.api_key_env = api_key_env
        self._key = os.environ.get(api_key_env) or None  # None: a local server without keys
        self.concurrency, self.timeout, self.max_retries, self.backoff = concurrency, timeout, max_retries, backoff

    def describe(self) -> dict:
        if len(self.servers) == 1:
            return {"backend": self.id, "model": self.model, "base_url": self.base_url, "concurrency": self.concurrency}
        return {"backend": self.id, "model": self.model, "base_urls": [x.url for x in self.servers], "concurrency": self.concurrency}

    def usage(self) -> list[str]:
        """One line per server: what it answered (printed after a run on several)."""
        if len(self.servers) == 1:
            return []
        return [f"server {x.url}: {x.requests} requests, {x.tokens} tokens, {x.faults} faults" for x in self.servers]

    def _pick(self) -> _Server:
        """The healthy server with the fewest requests in flight (ties: the
        first listed); if every one is resting, the one that wakes first."""
        t = now()
        awake = [x for x in self.servers if x.resting_until <= t]
        if not awake:
            return min(self.servers, key=lambda x: x.resting_until)
        return min(awake, key=lambda x: x.in_flight)

    def _fault(self, server: _Server) -> None:
        server.faults += 1
        server.fails += 1
        if len(self.servers) > 1 and server.fails >= FAILS_TO_REST:
            server.resting_until, server.fails = now() + REST, 0

    def _headers(self) -> dict:
        h = {"Content-Type": "application/json"}
        if self._key:
            h["Authorization"] = f"Bearer {self._key}"
        return h

    # -- before any story --------------------------------------------------------
    def preflight(self) -> None:
        """GET /models on every server: is it there, does it take the key, does
        it serve the model? Of several, those that fail are skipped with one
        warning each, as long as one answers."""
        errors, live = [], []
        for server in self.servers:
            try:
                self._preflight_one(server)
                live.append(server)
            except BackendError as e:
                errors.append(e)
        if not live:
            raise errors[0]
        for error in errors:
            warnings.warn(f"skipping a server: {error}", FabulaWarning, stacklevel=2)
        self.servers = live
        self.base_url = live[0].url

    def _session(self, limit: int, timeout: float):
        """An aiohttp session (call it on the loop that will use it). Not
        httpx: its client spent ~2.4 ms of CPU a request against aiohttp's
        ~0.27 (bare loops against bench/instant_server.py, AMD EPYC), and at
        hundreds of stories a second that was the driver's largest cost.
        Proxies come from the environment once per server (proxy_for)."""
        aiohttp = _aiohttp()
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
        )

    def _get(self, url: str, proxy: str | None) -> _Answer:
        async def get():
            async with self._session(1, min(self.timeout, 15.0)) as session:
                return await _send(session, "GET", url, self._headers(), proxy=proxy)

        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(get())
        finally:
            loop.close()

    def _preflight_one(self, server: _Server) -> None:
        aiohttp = _aiohttp()
        self_base, url = server.url, f"{server.url}/models"
        try:
            r = self._get(url, server.proxy)
        except aiohttp.ClientConnectorError:
            raise BackendError(f"no server answers at {self_base} (connection refused); start the server or fix --base-url") from None
        except TimeoutError:
            raise BackendError(f"the server at {self_base} did not answer GET /models within 15 s; check that it is up and not overloaded") from None
        except aiohttp.ClientError as e:
            raise BackendError(f"cannot reach {self_base} ({type(e).__name__}); check --base-url") from None
        if r.status in (401, 403):
            which = f"the API key in ${self.api_key_env}" if self._key else f"requests without a key (${self.api_key_env} is not set)"
            raise BackendError(
                f"the server at {self_base} refused {which} (HTTP {r.status}); set the right key in ${self.api_key_env} or name another variable with --api-key-env"
            )
        if r.status == 404:
            raise BackendError(f"{url} does not exist (HTTP 404); --base-url must be the API root, usually ending in /v1")
        if r.status >= 400:
            raise BackendError(f"GET {url} answered HTTP {r.status}; check the server's log")
        try:
            ids = [m["id"] for m in r.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackendError(f"GET {url} did not return an OpenAI model list; is {self_base} an OpenAI-compatible API?") from None
        if ids and self.model not in ids:
            raise BackendError(f"model {self.model!r} is not served at {self_base}; it serves: {', '.join(ids[:10])}; use --model with one of them")

    # -- one request, with retries -------------------------------------------------
    def _payload(self, req: Request) -> tuple[str, dict]:
        common = {"model": self.model, "max_tokens": req.max_tokens, "temperature": req.temperature, "top_p": req.top_p, "seed": req.seed}
        if req.chat:
            return "/chat/completions", {**common, "messages": [{"role": "user", "content": req.prompt}]}
        # No stop string: a base model often ends the beat sentence's paragraph
        # at once with a newline, and servers cannot forbid that before a
        # minimum (llama.cpp's min_tokens only blocks end-of-text). The writer
        # keeps the first non-empty line of the answer instead.
        return "/completions", {**common, "prompt": req.prompt}

    @staticmethod
    def _text(req: Request, body: dict) -> tuple[str, int, str]:
        choice = body["choices"][0]
        text = choice["message"]["content"] if req.chat else choice["text"]
        if not isinstance(text, str):
            raise ValueError("no text in the answer")
        usage = body.get("usage") or {}
        tokens = int(usage.get("completion_tokens") or max(1, len(text.split())))
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        return text, tokens, finish

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(RETRY_AFTER_CAP, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: fall back to backoff
        return random.uniform(0, min(BACKOFF_CAP, self.backoff * 2**attempt))  # full jitter

    async def _complete(self, session, req: Request) -> Completion:
        aiohttp = _aiohttp()
        path, payload = self._payload(req)
        body, headers = json.dumps(payload).encode(), self._headers()
        t0 = now()
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            server = self._pick()  # a retry may go to another server
            server.in_flight += 1
            try:
                r = await _send(session, "POST", server.url + path, headers, body, server.proxy)
                if r.status in RETRY_STATUS:
                    last, retry_after = f"HTTP {r.status}", r.retry_after
                elif r.status >= 400:
                    raise BackendError(
                        f"the server at {server.url} rejected a request to {path} (HTTP {r.status}: {_error_message(r)}); check --model and the server's limits"
                    )
                else:
                    if not r.body.strip():
                        raise ValueError("empty body")
                    text, tokens, finish = self._text(req, r.json())
                    server.fails, server.requests, server.tokens = 0, server.requests + 1, server.tokens + tokens
                    return Completion(text=text, tokens=tokens, seconds=now() - t0, finish=finish, retries=attempt)
            except TimeoutError:  # aiohttp's timeouts are asyncio.TimeoutError, which is TimeoutError
                last = f"timeout after {self.timeout:g} s"
            except aiohttp.ClientError as e:  # refused, reset, closed mid-answer, a broken HTTP answer
                last = f"connection error ({type(e).__name__})"
            except (ValueError, KeyError, IndexError, TypeError, json.JSONDecodeError):
                last = "malformed or empty answer"
            finally:
                server.in_flight -= 1
            self._fault(server)
            if attempt < self.max_retries:
                # Another server is waiting: go there at once rather than back off.
                if self._pick() is server or len(self.servers) == 1:
                    await asyncio.sleep(self._delay(attempt, retry_after))
        raise RequestFailed(f"{last}, {self.max_retries} retries spent")

    async def _drive(self, session, job: J) -> J:
        try:
            while (req := job.request()) is not None:
                parts = await asyncio.gather(*(self._complete(session, r) for r in split(req)))
                job.feed(merge(list(parts)))
        except RequestFailed as e:
            job.fail(str(e))
        return job

    # -- many jobs -----------------------------------------------------------------
    def run(self, jobs: Iterable[J | None]) -> Iterator[J]:
        _aiohttp()
        loop = asyncio.new_event_loop()

        async def open_session():
            return self._session(self.concurrency, self.timeout)

        session = loop.run_until_complete(open_session())
        source, active = JobSource(jobs), set[asyncio.Task]()
        # Finished tasks queue themselves here. Not asyncio.wait(active): that
        # hooks a callback onto every task in flight at each call and takes it
        # off again, work that grows with the concurrency.
        done: deque[asyncio.Task] = deque()
        wake: list[asyncio.Future] = []

        def finished(task: asyncio.Task) -> None:
            done.append(task)
            if wake and not wake[0].done():
                wake[0].set_result(None)

        try:
            while True:
                while len(active) < self.concurrency and (job := source.take()) is not None:
                    task = loop.create_task(self._drive(session, job))
                    task.add_done_callback(finished)
                    active.add(task)
                if not active and source.idle():
                    return
                if not done:
                    wake.append(loop.create_future())
                    loop.run_until_complete(wake[0])  # until a task finishes (and the others of that turn)
                    wake.clear()
                while done:
                    task = done.popleft()
                    active.discard(task)
                    yield task.result()  # a BackendError (bad request) ends the run here
        finally:
            for task in active:
                task.cancel()
            if active:
                loop.run_until_complete(asyncio.gather(*active, return_exceptions=True))
            loop.run_until_complete(session.close())
            loop.close()


def _error_message(r: _Answer) -> str:
    try:
        err = r.json().get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        return str(msg)[:200] if msg else r.reason
    except (ValueError, AttributeError):
        return r.reason
