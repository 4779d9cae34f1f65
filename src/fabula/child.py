"""A helper process of the writer's: a plain interpreter running one
function, talking over two pipes in length-prefixed pickle frames.

Not multiprocessing's spawn: that runs the caller's main module again, and a
script without a main guard would write its corpus twice. The child finds
fabula where this process found it (PYTHONPATH), ignores Ctrl-C (the writer
handles it and stops the child), and ends when its pipe closes.
"""

from __future__ import annotations

import os
import pickle
import queue
import select
import subprocess
import sys
import threading
from typing import Any, Iterator


def send(fd: int, obj: Any) -> None:
    """One frame: 8 bytes of length, then the pickle (whole frames only, so
    that select() on the reader's end says whether a reply has begun)."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(len(data).to_bytes(8, "little") + data)
    while view:
        view = view[os.write(fd, view) :]


def _read(fd: int, n: int) -> bytes:
    parts = []
    while n:
        part = os.read(fd, min(n, 1 << 20))
        if not part:
            raise EOFError
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def receive(fd: int) -> Any:
    return pickle.loads(_read(fd, int.from_bytes(_read(fd, 8), "little")))


def inbox(fd: int) -> Iterator[Any]:
    """Every message sent to a child, in order, read by a thread of its own
    until the pipe closes. A child that reads only between its own replies
    can deadlock with the writer: the writer blocked sending into a full pipe
    while the child is blocked sending its replies into another (long stories
    fill 64 KiB in a few). Read this way, the writer's sends always drain."""
    got: queue.SimpleQueue = queue.SimpleQueue()

    def pump() -> None:
        try:
            while True:
                got.put((True, receive(fd)))
        except BaseException as e:  # noqa: BLE001 - handed to the reader below
            got.put((False, e))

    threading.Thread(target=pump, name="fabula-inbox", daemon=True).start()
    while True:
        ok, value = got.get()
        if not ok:
            if isinstance(value, EOFError):
                return
            raise value
        yield value


class Child:
    """``target`` ("module:function", called with the child's read and write
    descriptors) in a process of its own; ``what`` names it in errors."""

    def __init__(self, target: str, what: str):
        module, func = target.split(":")
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        code = f"import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); from {module} import {func}; {func}({child_reads}, {child_writes})"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # where this process found fabula
        self.what = what
        self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(child_reads, child_writes), env=env, stdin=subprocess.DEVNULL)
        os.close(child_reads)
        os.close(child_writes)
        self.out, self.inp = parent_writes, parent_reads

    def send(self, obj: Any) -> None:
        try:
            send(self.out, obj)
        except OSError:  # not BrokenPipeError upwards: the CLI reads that as a closed stdout
            raise RuntimeError(f"{self.what} ended (exit code {self.proc.poll()})") from None

    def receive(self) -> Any:
        try:
            return receive(self.inp)
        except EOFError:
            raise RuntimeError(f"{self.what} ended (exit code {self.proc.poll()})") from None

    def waiting(self) -> bool:
        """Whether a reply has begun to arrive (reading it then blocks only until it is whole)."""
        return bool(select.select([self.inp], [], [], 0)[0])

    def close(self, goodbye: Any = None) -> None:
        try:
            send(self.out, goodbye)
        except OSError:
            pass
        os.close(self.out)
        os.close(self.inp)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
