"""The demo's training lanes: jobs in real spawned processes, at most `lanes` at once, failures surfaced.

The workers here stand in for training (they sleep and report) so the scheduling can be
checked in seconds; the demo test trains the real transformers through the same code.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest
import torch

from lightning_modules.demo.lanes import TrainJob, plan_lanes, train_side_by_side
from lightning_modules.demo.runner import Budget
from nbp.errors import UserError


def handshake_work(job: TrainJob, threads: int, messages) -> None:
    """Marks its start, then waits (up to 60 s) until the job named in its config has started too."""
    torch.set_num_threads(threads)
    started = time.time()
    (job.folder.parent / f"{job.name}.started").touch()
    other = job.config.get("wait_for")
    while other and not (job.folder.parent / f"{other}.started").exists():
        if time.time() - started > 60:
            messages.put(("error", job.name, f"{other} never started beside {job.name}", False))
            return
        time.sleep(0.05)
    messages.put(("steps", job.name, 1))
    messages.put(("done", job.name, {"steps": 1, "seconds": job.seconds, "val_bits_per_token": 1.0,
                                     "pid": os.getpid(), "threads": torch.get_num_threads(),
                                     "started": started, "ended": time.time()}))


def failing_work(job: TrainJob, threads: int, messages) -> None:
    if job.name == "bad":
        messages.put(("error", job.name, "NBPConfig.block=(3, 1, 1) is invalid: ...", True))
        return
    time.sleep(60)  # must be stopped by the parent, not waited for


def dying_work(job: TrainJob, threads: int, messages) -> None:
    os._exit(3)


def jobs(tmp_path: Path, seconds: dict[str, float]) -> list[TrainJob]:
    return [TrainJob(name, {}, tmp_path / name, s) for name, s in seconds.items()]



def test_plan_lanes_gives_each_cpu_thread_a_lane_and_a_gpu_one():
    assert plan_lanes("cpu", 2, 3) == (2, 1)
    assert plan_lanes("cpu", 16, 3) == (3, 5)
    assert plan_lanes("cpu", 1, 3) == (1, 1)
    assert plan_lanes("cuda", 16, 3) == (1, 16)


@pytest.mark.parametrize("lanes", [1, 2, 3])
def test_transformer_seconds_fill_the_same_stage_time_whatever_the_lanes(lanes):
    budget = Budget(15)
    seconds = budget.transformer_seconds(lanes)
    stage = 2 * budget.model_seconds + budget.frames_seconds
    assert seconds["nbp"] == seconds["ntp"]  # the twins train equally long
    assert seconds["frames"] == pytest.approx(stage if lanes > 1 else budget.frames_seconds)
    lane_of = {1: {"nbp": 0, "ntp": 0, "frames": 0}, 2: {"nbp": 0, "ntp": 0, "frames": 1},
               3: {"nbp": 0, "ntp": 1, "frames": 2}}[lanes]
    longest_lane = max(sum(s for name, s in seconds.items() if lane_of[name] == lane) for lane in range(lanes))
    assert longest_lane == pytest.approx(stage)


@pytest.mark.slow
def test_jobs_run_in_their_own_processes_at_most_lanes_at_once(tmp_path):
    # a can only finish once b runs beside it, b once c does: with 2 lanes, c must take a's lane.
    todo = [TrainJob("a", {"wait_for": "b"}, tmp_path / "a", 1.0), TrainJob("b", {"wait_for": "c"}, tmp_path / "b", 1.0),
            TrainJob("c", {}, tmp_path / "c", 1.0)]
    results = train_side_by_side(todo, lanes=2, threads=1, work=handshake_work)
    assert list(results) == ["a", "b", "c"]
    assert len({r["pid"] for r in results.values()} | {os.getpid()}) == 4
    assert all(r["threads"] == 1 for r in results.values())
    assert results["c"]["started"] >= results["a"]["ended"]  # never three at once
    assert not multiprocessing.active_children()


@pytest.mark.slow
def test_a_user_error_in_one_job_stops_the_others_and_keeps_its_message(tmp_path):
    started = time.perf_counter()
    with pytest.raises(UserError, match=r"NBPConfig.block=\(3, 1, 1\) is invalid"):
        train_side_by_side(jobs(tmp_path, {"slow": 60.0, "bad": 1.0}), lanes=2, threads=1, work=failing_work)
    assert time.perf_counter() - started < 45  # the slow job was stopped, not waited for
    assert not multiprocessing.active_children()


@pytest.mark.slow
def test_a_worker_that_dies_is_reported_with_its_exit_code(tmp_path):
    with pytest.raises(RuntimeError, match=r"the a transformer stopped without a result \(exit code 3\)"):
        train_side_by_side(jobs(tmp_path, {"a": 1.0}), lanes=2, threads=1, work=dying_work)
    assert not multiprocessing.active_children()
