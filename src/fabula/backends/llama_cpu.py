"""llama.cpp on this CPU: what the loaded library was built with, which of its
optional CPU paths fabula lets it use, and a crash that says what it is.

Why this exists: on Sapphire-Rapids-class Xeons (``amx_int8`` in
/proc/cpuinfo) a llama.cpp built with ``-march=native`` compiles its Intel AMX
matrix multiply and moves Q4_K weights into an "AMX" buffer at load time; the
first decode then segfaults in ``ggml_backend_amx_mul_mat`` (llama.cpp issue
20824). Three layers keep fabula off that path:

1. ``make setup`` builds llama-cpp-python with ``-mno-amx-*`` (see the
   Makefile), and ``python -m fabula.backends.llama_cpu --check-build`` fails
   when the installed library still has AMX compiled in.
2. fabula's own loader keeps the weights out of llama.cpp's extra buffer types
   (``use_extra_bufts = False``) when the library has AMX, or when
   ``FABULA_SAFE_CPU=1`` asks for it. Otherwise they stay on: the CPU_REPACK
   buffer (weights re-laid out for AVX2/AVX-512 kernels) is faster and safe.
3. Before the first load in a process, a child process loads the model and
   decodes a prompt with the same settings. If llama.cpp dies there by a
   signal, fabula retries the child with the extra buffers off and, if that
   works, goes on with them off and one warning; if not, it stops with one
   line naming the cause and the fix. The verdict is cached per library,
   model, CPU and setting (``~/.cache/fabula/preflight.json``), so only the
   first run on a machine pays for the child (about a second).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

from fabula.errors import BackendError, FabulaWarning, MissingDependency

SAFE_ENV = "FABULA_SAFE_CPU"  # 1: never use llama.cpp's extra CPU buffer types (AMX, repacking)
_PROBE_PROMPT = "The night train from Vienna reached the border at four, and the guards"


def _llama():
    """llama-cpp-python, or MissingDependency saying how to install it."""
    try:
        import llama_cpp
    except ImportError:
        raise MissingDependency("the embedded backend", "llama-cpp-python") from None
    return llama_cpp


def system_info() -> str:
    """llama.cpp's own feature line, e.g. ``CPU : SSE3 = 1 | AVX2 = 1 | … | REPACK = 1 |``."""
    return _llama().llama_print_system_info().decode("utf-8", "replace")


def library_has_amx() -> bool:
    """Whether the loaded llama.cpp has its AMX paths compiled in (the crashing build)."""
    return "AMX_INT8 = 1" in system_info()


def safe_cpu_requested() -> bool:
    return os.environ.get(SAFE_ENV, "").strip().lower() not in ("", "0", "no", "false")


def extra_bufts_allowed() -> bool:
    """Whether fabula lets llama.cpp move weights into extra buffer types."""
    return not (safe_cpu_requested() or library_has_amx())


def cpu_model() -> str:
    return _cpuinfo().get("model name", "unknown CPU")


def cpu_has_amx() -> bool:
    return "amx_int8" in _cpuinfo().get("flags", "").split()


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if not key:
                    break  # first processor only
                info.setdefault(key, value.strip())
    except OSError:
        pass
    return info


def load_model(path: str, extra_bufts: bool, log: list[str] | None = None):
    """``llama_model_load_from_file`` with fabula's settings; llama.cpp's log
    lines go to ``log`` (kept for tests and ``fabula doctor``), never to stderr."""
    L = _llama()
    _log_to(L, log if log is not None else [])
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.use_extra_bufts = extra_bufts
    return L.llama_model_load_from_file(path.encode(), mp)


def _log_to(L, sink: list[str]) -> None:
    def on_log(level, text, user):
        if len(sink) < 4000:  # the load's lines; a long run's later messages are not kept
            sink.append(text.decode("utf-8", "replace"))

    cb = L.llama_log_callback(on_log)
    _KEEP.append(cb)  # C holds the pointer for the life of the process
    L.llama_log_set(cb, None)


_KEEP: list = []


class Tokenizer:
    """A GGUF model's tokenizer alone (llama.cpp loads its vocabulary, no
    weights): ``fabula tune`` tokenizes with it, so training sees exactly the
    token ids the engine decodes."""

    def __init__(self, path: str):
        L = self.L = _llama()
        _log_to(L, [])
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.vocab_only = True
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            raise BackendError(f"llama.cpp could not read the tokenizer of {path}; check that it is a GGUF model file")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.eos = L.llama_vocab_eos(self.vocab)

    def __call__(self, text: str, bos: bool = False) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (self.L.llama_token * cap)()
        n = self.L.llama_tokenize(self.vocab, data, len(data), buf, cap, bos, False)
        return list(buf[: max(0, n)])

    def close(self) -> None:
        if self.model:
            self.L.llama_model_free(self.model)
            self.model = None


def buffer_lines(log: list[str]) -> list[str]:
    """The load log's ``<type> model buffer size = … MiB`` lines."""
    return [line.strip() for line in "".join(log).splitlines() if "model buffer size" in line]


# -- preflight ---------------------------------------------------------------
def preflight(model_path: str, threads: int, fresh: bool = False) -> bool:
    """Decode once in a child; return whether the extra buffer types may be used.

    Raises BackendError (one line) when llama.cpp crashes even with them off.
    ``fresh`` probes again even when the cache has a verdict."""
    extra = extra_bufts_allowed()
    key = _cache_key(model_path, threads, extra)
    cache = _read_cache()
    if key in cache and not fresh:
        return cache[key]
    rc = _probe(model_path, threads, extra)
    if rc < 0 and extra:  # crashed with the extra buffers: are they the cause?
        first, rc = rc, _probe(model_path, threads, False)
        if rc >= 0:
            warnings.warn(
                f"llama.cpp crashed ({_signame(first)}) decoding with its optional CPU weight buffers on this CPU "
                f"({cpu_model()}); fabula runs with them off ({SAFE_ENV}=1), which is safe but may be slower",
                FabulaWarning,
                stacklevel=2,
            )
        extra = False
    if rc < 0:
        raise BackendError(crash_message(rc, model_path))
    if rc == 0:  # anything else (a file llama.cpp cannot load, say) is the in-process load's to report
        cache[key] = extra
        _write_cache(cache)
    return extra


def crash_message(rc: int, model_path: str) -> str:
    amx = "yes" if cpu_has_amx() else "no"
    cause = (
        "its Intel AMX path (llama.cpp issue 20824) is the likely cause"
        if library_has_amx() and cpu_has_amx()
        else "one of its optional CPU paths is the likely cause"
    )
    return (
        f"llama.cpp crashed ({_signame(rc)}) on a test decode of {os.path.basename(model_path)} on this CPU "
        f"({cpu_model()}, AMX: {amx}) even with {SAFE_ENV}=1; {cause}: rebuild llama-cpp-python for a portable "
        "CPU baseline with CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install --force-reinstall --no-cache-dir llama-cpp-python"
    )


def _signame(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def _probe_cmd(model_path: str, threads: int, extra: bool) -> list[str]:
    return [sys.executable, "-m", "fabula.backends.llama_cpu", "--probe", model_path, "--threads", str(threads), "--extra-bufts", "1" if extra else "0"]


def _probe(model_path: str, threads: int, extra: bool) -> int:
    """The child's exit status: 0 decoded, > 0 failed cleanly, < 0 killed by that signal."""
    cmd = _probe_cmd(model_path, threads, extra)
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600).returncode
    except subprocess.TimeoutExpired:
        return 1  # slow, not crashed: let the real load go ahead


def _probe_decode(model_path: str, threads: int, extra: bool) -> None:
    """The child's work: load as fabula does, decode a prompt, then one token
    more (both shapes the engine uses: a batch of prompt tokens and a single step)."""
    L = _llama()
    model = load_model(model_path, extra)
    if not model:
        sys.exit(3)
    cp = L.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = 256, 256, 256
    cp.n_threads = cp.n_threads_batch = threads
    ctx = L.llama_init_from_model(model, cp)
    vocab = L.llama_model_get_vocab(model)
    data = _PROBE_PROMPT.encode()
    buf = (L.llama_token * 64)()
    n = L.llama_tokenize(vocab, data, len(data), buf, 64, True, False)
    if L.llama_decode(ctx, L.llama_batch_get_one(buf, n)) != 0:
        sys.exit(4)
    tok = (L.llama_token * 1)(buf[n - 1])
    if L.llama_decode(ctx, L.llama_batch_get_one(tok, 1)) != 0:
        sys.exit(4)


def _cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fabula" / "preflight.json"


def _read_cache() -> dict:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache costs the next run another probe, nothing else


def _cache_key(model_path: str, threads: int, extra: bool) -> str:
    """Library files, model file, CPU and settings: a change to any re-probes."""
    L = _llama()
    lib_dir = Path(L.__file__).parent / "lib"
    parts = [sys.executable, str(threads), str(extra), _cpuinfo().get("model name", ""), _cpuinfo().get("flags", "")]
    for p in [*sorted(lib_dir.glob("*.so*")), Path(model_path)]:
        try:
            st = p.stat()
            parts.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(str(p))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


# -- command line: the Makefile's build check, and the preflight's child --------
def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m fabula.backends.llama_cpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check-build", action="store_true", help="exit 1 if the installed llama.cpp has AMX compiled in")
    ap.add_argument("--probe", metavar="MODEL", help="(internal) load MODEL and decode once")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--extra-bufts", type=int, default=1)
    a = ap.parse_args(argv)
    if a.probe:
        _probe_decode(a.probe, a.threads, bool(a.extra_bufts))
        return 0
    info = system_info()
    print(f"CPU: {cpu_model()} (AMX: {'yes' if cpu_has_amx() else 'no'})")
    print(f"llama.cpp: {info.strip()}")
    if a.check_build and library_has_amx():
        print("llama-cpp-python has Intel AMX compiled in (it segfaults on some Xeons); rebuilding it without", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
