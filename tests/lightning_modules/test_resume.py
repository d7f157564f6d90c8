"""Exact resume after a real SIGKILL, and `--ckpt_path last` never picking an incomplete file."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from lightning_modules.checkpointing import (
    AtomicCheckpointIO,
    PeriodicCheckpoint,
    find_last_checkpoint,
    is_complete_checkpoint,
)
from lightning_modules.resumable import ResumableDataLoader, ResumableSampler
from tests.lightning_modules.launch import (
    assert_same_weights,
    fit_in_process,
    load_weights,
    nbp_fit_command,
    read_steps,
    run_forked,
    run_subprocess,
    toy_config,
    write_config,
)

MAX_STEPS = 9  # 6 batches per epoch: the resumed run crosses into epoch 1 (a new shuffle)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights_and_data(tmp_path):
    # Uninterrupted reference (in this process: no second Lightning import).
    ref = tmp_path / "ref"
    assert fit_in_process(write_config(ref / "c.yaml", toy_config(ref, max_steps=MAX_STEPS, dropout=0.2))) == 0

    # Same run, checkpoint every 2 steps, SIGKILLed after step index 4 (5 steps done, checkpoint at 4).
    run = tmp_path / "run"
    killed_cfg = write_config(
        run / "killed.yaml", toy_config(run, max_steps=MAX_STEPS, dropout=0.2, every_n_train_steps=2, die_at_step=5)
    )
    killed = run_subprocess(nbp_fit_command(killed_cfg))
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    checkpoints = run / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["global_step"] == 4

    # A later write of last.ckpt that died half-way must not be resumed from.
    data = (checkpoints / "last.ckpt").read_bytes()
    (checkpoints / "last.ckpt").write_bytes(data[: len(data) // 2])

    resume_cfg = write_config(run / "resume.yaml", toy_config(run, max_steps=MAX_STEPS, dropout=0.2, every_n_train_steps=2))
    assert fit_in_process(resume_cfg, "--ckpt_path", "last") == 0

    assert_same_weights(load_weights(run / "dump"), load_weights(ref / "dump"), atol=1e-7)
    ref_steps, run_steps = read_steps(ref / "dump"), read_steps(run / "dump")
    assert sorted(run_steps) == list(range(MAX_STEPS))
    for step in range(MAX_STEPS):  # same samples, same loss curve, step by step
        assert run_steps[step]["index"] == ref_steps[step]["index"], step
        assert abs(run_steps[step]["loss"] - ref_steps[step]["loss"]) < 1e-6, step
    # epoch 1 reshuffles: the data order really depends on the epoch
    assert ref_steps[6]["index"] != ref_steps[0]["index"]


def _tiny_checkpoint(step: int) -> dict:
    return {"global_step": step, "state_dict": {"w": torch.full((64, 64), float(step))}}


def test_last_resolution_skips_truncated_and_partial_files(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    io.save_checkpoint(_tiny_checkpoint(4), tmp_path / "step=4.ckpt")
    io.save_checkpoint(_tiny_checkpoint(4), tmp_path / "last.ckpt")
    assert is_complete_checkpoint(tmp_path / "last.ckpt")
    # last.ckpt truncated (as a non-atomic writer killed mid-write would leave it), and newer
    data = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(data[:-100])
    assert not is_complete_checkpoint(tmp_path / "last.ckpt")
    (tmp_path / "notes.txt").write_text("not a checkpoint")

    assert find_last_checkpoint(tmp_path) == tmp_path / "step=4.ckpt"

    class FakeTrainer:
        default_root_dir = str(tmp_path.parent)

    callback = PeriodicCheckpoint(dirpath=str(tmp_path))
    assert callback._find_last_checkpoints(FakeTrainer()) == {str(tmp_path / "step=4.ckpt")}


@pytest.mark.slow
def test_kill_mid_write_leaves_previous_checkpoint(tmp_path):
    """A process SIGKILLed while writing last.ckpt leaves the old last.ckpt whole."""
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_tiny_checkpoint(2), target)

    def save_then_die(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")  # some bytes reach the disk ...
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # ... then the process dies mid-write

    def write_in_child():
        torch.save = save_then_die  # only in the forked child
        AtomicCheckpointIO().save_checkpoint({"global_step": 3}, target)

    assert run_forked(write_in_child) == -signal.SIGKILL
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert leftovers and all(name.startswith(".partial-") for name in leftovers)  # the dead write's temp file
    assert torch.load(target, weights_only=True)["global_step"] == 2
    assert find_last_checkpoint(tmp_path) == target


def test_sampler_resume_continues_the_global_order():
    dataset = list(range(10))
    full = [list(iter(ResumableSampler(dataset, num_replicas=2, rank=r, seed=3))) for r in (0, 1)]
    assert sorted(full[0] + full[1]) == list(range(10))  # a partition of the epoch
    for rank in (0, 1):
        sampler = ResumableSampler(dataset, num_replicas=2, rank=rank, seed=3)
        sampler.resume_at(epoch=0, global_offset=4)
        assert list(iter(sampler)) == full[rank][2:]
        assert list(iter(sampler)) == full[rank]  # the next pass is whole again


def test_loader_position_survives_a_different_world_size():
    dataset = list(range(24))
    one = ResumableDataLoader(dataset, batch_size=4, seed=1)
    one.sampler.num_replicas, one.sampler.rank = 1, 0
    batches = iter(one)
    seen = [next(batches).tolist() for _ in range(3)]  # 12 samples consumed
    state = one.state_dict()
    assert state["batches_done"] == 3

    order = one.sampler.global_order()
    assert sum(seen, []) == order[:12]
    # resumed on 2 ranks with batch 2 each: the global position (12) is kept
    for rank in (0, 1):
        two = ResumableDataLoader(dataset, batch_size=2, seed=1)
        two.sampler.num_replicas, two.sampler.rank = 2, rank
        two.sampler.num_samples, two.sampler.total_size = 12, 24
        two.load_state_dict(state)
        rest = sum((b.tolist() for b in two), [])
        assert rest == order[12 + rank :: 2]
        assert two.state_dict()["batches_done"] == 6  # 12 skipped / (2 x 2) + 3 new batches


class _FolderStrategy:
    """Stands in for FSDP with sharded state dicts: checkpoints are folders (no GPU needed)."""

    _state_dict_type = "sharded"

    def barrier(self, name=None):
        pass


class _FolderTrainer:
    is_global_zero = True
    loggers = []
    strategy = _FolderStrategy()

    def __init__(self, step, die_mid_write=False):
        self.global_step, self.die_mid_write = step, die_mid_write

    def save_checkpoint(self, path, weights_only=False):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save({"shard": self.global_step}, path / "__0_0.distcp")
        if self.die_mid_write:
            raise KeyboardInterrupt  # the process dies before the metadata is written
        (path / ".metadata").write_bytes(b"dcp")
        torch.save({"global_step": self.global_step}, path / "meta.pt")


def test_sharded_checkpoint_folder_is_replaced_whole(tmp_path):
    callback = PeriodicCheckpoint(dirpath=str(tmp_path))
    target = tmp_path / "last.ckpt"
    callback._save_checkpoint(_FolderTrainer(step=4), str(target))
    assert is_complete_checkpoint(target)
    with pytest.raises(KeyboardInterrupt):
        callback._save_checkpoint(_FolderTrainer(step=6, die_mid_write=True), str(target))
    # the interrupted save never touched the folder under the checkpoint's name
    assert torch.load(target / "meta.pt", weights_only=True)["global_step"] == 4
    assert torch.load(target / "__0_0.distcp", weights_only=True)["shard"] == 4
    assert not is_complete_checkpoint(tmp_path / ".partial-last.ckpt.tmp")
    assert find_last_checkpoint(tmp_path) == target
    callback._save_checkpoint(_FolderTrainer(step=8), str(target))  # the next save cleans up and swaps
    assert torch.load(target / "meta.pt", weights_only=True)["global_step"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_transformer_module_resumes_exactly(tmp_path):
    """The real NBPModule + TokenDataModule, with dropout and condition dropout: a run stopped at step 3
    and resumed with --ckpt_path last ends with the same weights as an uninterrupted 6-step run."""
    from tests.lightning_modules.test_distributed import nbp_config
    from tests.lightning_modules.test_nbp_module import write_pattern_cache

    cache = write_pattern_cache(tmp_path / "cache", n=24)  # 6 batches of 4: the resumed run crosses an epoch

    def config(root, max_steps):
        cfg = nbp_config(root, cache, batch_size=4)
        cfg["trainer"]["max_steps"] = max_steps
        init = cfg["model"]["init_args"]
        init["overrides"].update(dropout=0.1, p_uncond=0.2)
        init["total_steps"] = 8  # the LR schedule must not depend on where the first run stopped
        return write_config(root / f"c{max_steps}.yaml", cfg)

    assert fit_in_process(config(tmp_path / "ref", 8)) == 0
    assert fit_in_process(config(tmp_path / "run", 3)) == 0
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    assert fit_in_process(config(tmp_path / "run", 8), "--ckpt_path", "last") == 0
    assert_same_weights(load_weights(tmp_path / "run" / "dump"), load_weights(tmp_path / "ref" / "dump"), atol=1e-6)
