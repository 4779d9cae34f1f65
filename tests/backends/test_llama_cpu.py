"""llama.cpp kept off its Intel AMX path, and a native crash that says what it is.

The AMX crash needs a Sapphire-Rapids-class CPU to happen; these tests hold on
any x86-64 machine: the build flags cannot turn AMX on, the installed library
has none, the model as fabula and the test server load it sits in no AMX
buffer, and a child that dies by a signal becomes one clear line.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from fabula.backends import llama_cpu
from fabula.errors import BackendError, FabulaWarning

REPO = Path(__file__).resolve().parents[2]
x86 = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="AMX exists on x86-64 only")


def _macros(*flags: str) -> set[str]:
    out = subprocess.run(["cc", *flags, "-dM", "-E", "-x", "c", "/dev/null"], capture_output=True, text=True, check=True)
    return {line.split()[1] for line in out.stdout.splitlines()}


@x86
def test_build_flags_compile_no_amx_even_for_a_sapphire_rapids_target():
    flags = subprocess.run(["make", "-s", "-C", str(REPO), "llama-cflags"], capture_output=True, text=True, check=True).stdout.split()
    assert "-mno-amx-int8" in flags and "-mno-amx-tile" in flags
    # The target that crashes has AMX on: the check below can fail.
    assert "__AMX_INT8__" in _macros("-march=sapphirerapids")
    # llama.cpp's build puts CFLAGS before its own -march=native (see its
    # compile commands): the AMX macros that guard ggml's AMX code stay off.
    for march in ("-march=sapphirerapids", "-march=native"):
        m = _macros(*flags, march)
        assert not {"__AMX_INT8__", "__AMX_TILE__", "__AMX_BF16__"} & m, march
        assert "__SSE2__" in m  # the rest of the target is still there


def test_installed_llama_cpp_has_no_amx_compiled_in():
    info = llama_cpu.system_info()
    assert "CPU :" in info, info  # the feature line is what we think it is
    assert "AMX_INT8 = 1" not in info
    r = subprocess.run([sys.executable, "-m", "fabula.backends.llama_cpu", "--check-build"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "AMX: " in r.stdout


@pytest.mark.model
def test_the_model_as_fabula_loads_it_uses_no_amx_buffer_and_keeps_repacking():
    from fabula.backends.embedded import EmbeddedBackend

    be = EmbeddedBackend.load(words=120)
    lines = llama_cpu.buffer_lines(be.load_log)
    assert lines, be.load_log[-20:]  # llama.cpp logged its buffers
    assert not [ln for ln in lines if "AMX" in ln]
    # The AMX-free library keeps llama.cpp's other extra buffers (repacking) on.
    assert be.extra_bufts is True and not llama_cpu.library_has_amx()


@pytest.mark.model
def test_safe_cpu_turns_the_extra_buffers_off(monkeypatch):
    from fabula.backends.embedded import default_model_path

    monkeypatch.setenv(llama_cpu.SAFE_ENV, "1")
    assert llama_cpu.extra_bufts_allowed() is False
    log: list[str] = []
    model = llama_cpu.load_model(default_model_path(), llama_cpu.extra_bufts_allowed(), log)
    assert model
    lines = llama_cpu.buffer_lines(log)
    assert lines and not [ln for ln in lines if "REPACK" in ln or "AMX" in ln], lines
    monkeypatch.setenv(llama_cpu.SAFE_ENV, "0")
    assert llama_cpu.extra_bufts_allowed() is True


def _segfault_when(extra_crashes: bool, safe_crashes: bool):
    crash = [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"]  # a real SIGSEGV in native code
    ok = [sys.executable, "-c", "pass"]

    def cmd(model_path, threads, extra):
        return crash if (extra_crashes if extra else safe_crashes) else ok

    return cmd


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(llama_cpu.SAFE_ENV, raising=False)
    return tmp_path / "fabula" / "preflight.json"


def test_a_crash_with_the_extra_buffers_falls_back_to_safe_mode_with_one_warning(cache, monkeypatch):
    from fabula.backends.embedded import default_model_path

    monkeypatch.setattr(llama_cpu, "_probe_cmd", _segfault_when(extra_crashes=True, safe_crashes=False))
    with pytest.warns(FabulaWarning, match=r"crashed \(SIGSEGV\).*FABULA_SAFE_CPU=1"):
        assert llama_cpu.preflight(default_model_path(), 2) is False
    assert cache.is_file()
    # The verdict is cached: no child the second time.
    monkeypatch.setattr(llama_cpu, "_probe_cmd", lambda *a: pytest.fail("probed again"))
    assert llama_cpu.preflight(default_model_path(), 2) is False


def test_a_crash_even_in_safe_mode_is_one_line_naming_cause_and_fix(cache, monkeypatch):
    from fabula.backends.embedded import default_model_path

    monkeypatch.setattr(llama_cpu, "_probe_cmd", _segfault_when(extra_crashes=True, safe_crashes=True))
    with pytest.raises(BackendError) as e:
        llama_cpu.preflight(default_model_path(), 2)
    msg = str(e.value)
    assert "\n" not in msg and "SIGSEGV" in msg and "CPU" in msg
    assert "CMAKE_ARGS='-DGGML_NATIVE=OFF'" in msg
    assert not cache.exists()  # a crash is never cached as fine


@pytest.mark.model
def test_the_real_preflight_decodes_and_is_cached(cache, monkeypatch):
    from fabula.backends.embedded import default_model_path

    assert llama_cpu.preflight(default_model_path(), 2) is True
    monkeypatch.setattr(llama_cpu, "_probe_cmd", lambda *a: pytest.fail("probed again"))
    assert llama_cpu.preflight(default_model_path(), 2) is True


@pytest.mark.model
def test_a_crash_in_the_cli_names_the_fix(tmp_path):
    """End to end: a write whose preflight child crashes prints one line, exit 2, no folder."""
    from tests.conftest import run_cli

    # sitecustomize in the child makes every preflight probe segfault.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "from fabula.backends import llama_cpu\nimport sys\nllama_cpu._probe_cmd = lambda *a: [sys.executable, '-c', 'import ctypes; ctypes.string_at(0)']\n"
    )
    env = {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "XDG_CACHE_HOME": str(tmp_path / "c")}
    r = run_cli("write", "-n", "1", "--out", str(tmp_path / "out"), cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("fabula: error:")]
    assert len(errors) == 1 and "SIGSEGV" in errors[0] and "FABULA_SAFE_CPU" in errors[0], r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.model
def test_doctor_decodes_in_a_child_and_reports_the_build(tmp_path):
    from tests.conftest import run_cli

    r = run_cli("doctor", env={"XDG_CACHE_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "AMX built:  no" in r.stdout and "repacking:  on" in r.stdout and "decode:     ok" in r.stdout
    assert (tmp_path / "fabula" / "preflight.json").is_file()
    r = run_cli("doctor", env={"XDG_CACHE_HOME": str(tmp_path), llama_cpu.SAFE_ENV: "1"})
    assert r.returncode == 0 and f"repacking:  off ({llama_cpu.SAFE_ENV}=1)" in r.stdout, r.stdout + r.stderr


@pytest.mark.model
def test_the_cli_shows_the_safe_mode_fallback_as_one_warning_line(tmp_path):
    """Probes crash only with the extra buffers: the run goes on without them, with one warning."""
    from tests.conftest import run_cli

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "from fabula.backends import llama_cpu\n"
        "import sys\n"
        "llama_cpu._probe_cmd = lambda m, t, extra: [sys.executable, '-c', "
        "'import ctypes; ctypes.string_at(0)' if extra else 'pass']\n"
    )
    env = {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "XDG_CACHE_HOME": str(tmp_path / "c")}
    r = run_cli("doctor", env=env)
    assert r.returncode == 0, r.stderr
    warns = [ln for ln in r.stderr.splitlines() if ln.startswith("fabula: warning:")]
    assert len(warns) == 1 and "SIGSEGV" in warns[0], r.stderr
    assert "repacking:  off" in r.stdout
