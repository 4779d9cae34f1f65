"""`fabula write --executor ray` on a real local Ray (2 CPUs, two workers,
the real embedded model, short stories): exactly N stories with the local
plan's cards, a worker killed mid-run, the driver killed mid-run, a worker
that cannot load its model."""

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

import ray  # the ray extra: make test installs it
from tests.conftest import plan_cards, run_cli
from tests.test_end_to_end import assert_valid_corpus

pytestmark = pytest.mark.model

N = 4  # stories: enough for two workers, a kill between stories and a resume
WORDS = 180
ARGS = ["write", "-n", str(N), "--words", str(WORDS), "--seed", "11", "--executor", "ray", "--workers", "2", "--threads", "1"]


def ray_processes() -> set[int]:
    """PIDs of Ray's own daemons on this machine (a run must not leave any)."""
    out = subprocess.run(["pgrep", "-f", "gcs_server|raylet"], capture_output=True, text=True).stdout
    return {int(x) for x in out.split()}


def wait_gone(before: set[int], seconds: float = 30) -> set[int]:
    deadline = time.time() + seconds
    while time.time() < deadline and ray_processes() - before:
        time.sleep(0.5)
    return ray_processes() - before


def assert_local_plan(out, seed: int, n: int) -> None:
    """The cards planned are those a local run with this seed plans, in order,
    and each was written or rejected (the checks, not the executor, reject)."""
    from fabula.packs import load_pack
    from fabula.plan import Planner

    plan = plan_cards(out)
    local = Planner(load_pack("spy"), seed, n)
    assert plan == [local.next().to_dict() for _ in plan]
    done = [json.loads(x)["card"] for name in ("corpus.jsonl", "rejects.jsonl") if (out / name).exists() for x in (out / name).read_text().splitlines()]
    assert sorted(c["id"] for c in done) == [c["id"] for c in plan]


def test_two_ray_workers_write_exactly_n_stories_with_the_local_plan(tmp_path):
    before = ray_processes()
    out = tmp_path / "c"
    # Best of 2: each worker forks a paragraph's prompt into two sequences, as locally.
    r = run_cli(*ARGS, "--best-of", "2", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    recs = assert_valid_corpus(out, N, WORDS)
    assert_local_plan(out, 11, N)
    assert all(rec["executor"] == "ray" and rec["workers"] == 2 and rec["best_of"] == 2 and rec["threads"] == 1 for rec in recs)
    lines = [x for x in r.stdout.splitlines() if x.startswith("ray worker")]
    assert len(lines) == 2 and all(" 0 paragraphs" not in x and "lost" not in x for x in lines), r.stdout
    assert not wait_gone(before), "the run left Ray daemons behind"


def test_a_worker_killed_mid_run_costs_only_its_in_flight_paragraphs(tmp_path):
    import fabula
    from fabula.backends.ray_pool import worker_name

    out = tmp_path / "c"
    killed = []

    def kill_worker_one() -> None:
        deadline = time.time() + 300
        while time.time() < deadline:
            if (out / "corpus.jsonl").exists() and (out / "corpus.jsonl").read_text().count("\n") >= 1:
                ray.kill(ray.get_actor(worker_name(1)))  # as a lost node or an OOM kill would
                killed.append(time.time())
                return
            time.sleep(0.2)

    t = threading.Thread(target=kill_worker_one, daemon=True)
    t.start()
    summary = fabula.Corpus(out).write(
        N, seed=11, words=WORDS, best_of=1, backend=fabula.EmbeddedModel(threads=1), executor=fabula.RayCluster(workers=2), progress=False
    )
    t.join()
    assert killed, "the run ended before a story was committed"
    assert summary.written == N
    assert_valid_corpus(out, N, WORDS)
    lost = [x for x in summary.lines() if x.startswith("ray worker 1")]
    assert lost and "lost" in lost[0], summary.lines()
    other = [x for x in summary.lines() if x.startswith("ray worker 2")]
    assert other and " 0 paragraphs" not in other[0]


def test_the_driver_killed_mid_run_resumes_to_exactly_n(tmp_path):
    before = ray_processes()
    out = tmp_path / "c"
    # One story per worker at a time, so that the kill lands between stories.
    cmd = [sys.executable, "-m", "fabula", *ARGS, "--best-of", "1", "--batch", "1", "--out", str(out), "-q"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not ((out / "corpus.jsonl").exists() and (out / "corpus.jsonl").read_text().count("\n") >= 2):
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    first = (out / "corpus.jsonl").read_text().count("\n")
    assert 2 <= first < N, "kill the driver mid-run: after two stories, before the last"
    assert not wait_gone(before), "a killed driver's local Ray must not outlive it"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert_valid_corpus(out, N, WORDS)
    assert f"corpus now {N}/{N}" in done.stdout and "written 0" not in done.stdout


def test_a_worker_that_cannot_load_the_model_fails_before_any_story(tmp_path):
    out = tmp_path / "c"
    r = run_cli("write", "-n", "2", "--backend", f"gguf:{tmp_path / 'nowhere.gguf'}", "--executor", "ray", "--workers", "1", "--out", str(out))
    assert r.returncode != 0
    err = [x for x in r.stderr.splitlines() if x.startswith("fabula: error")]
    assert len(err) == 1 and "Ray worker 1 on node" in err[0] and "cannot load the model" in err[0], r.stderr
    assert "nowhere.gguf" in err[0]
    assert not out.exists()  # nothing written, not even the folder
