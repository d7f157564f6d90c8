"""NaN guard and throughput monitor, through the real `nbp train fit` command (in this process)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from lightning_modules.callbacks import NonFiniteLossGuard, ThroughputMonitor, batch_size_of
from tests.lightning_modules.launch import fit_in_process, toy_config, write_config


def test_nan_guard_stops_before_the_update_and_keeps_the_last_checkpoint(tmp_path, capsys):
    cfg = toy_config(tmp_path, max_steps=20, every_n_train_steps=2, nan_at_step=5)
    code = fit_in_process(write_config(tmp_path / "c.yaml", cfg))
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("nbp: error:")]
    assert len(err) == 1
    assert "loss is nan at global step 5" in err[0] and "last.ckpt" in err[0] and "--ckpt_path last" in err[0]

    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    assert checkpoint["global_step"] == 4  # written at step 4, never overwritten by the failed run
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())
    assert sorted(p.name for p in last.parent.glob("*.ckpt")) == ["last.ckpt", "step=2.ckpt", "step=4.ckpt"]


def test_nan_guard_all_ranks_take_the_decision_of_any_rank():
    class Strategy:
        def __init__(self, anywhere):
            self.anywhere = anywhere

        def reduce_boolean_decision(self, decision, all=True):  # noqa: A002 (Lightning's name)
            assert all is False  # "any rank": a single bad rank must stop everyone
            return decision or self.anywhere

    class Trainer:
        global_step, current_epoch, global_rank = 7, 1, 0
        checkpoint_callback = None

        def __init__(self, anywhere):
            self.strategy = Strategy(anywhere)

    guard = NonFiniteLossGuard()
    guard.on_before_backward(Trainer(False), None, torch.tensor(1.0))  # finite everywhere: continue
    with pytest.raises(Exception, match="non-finite on another rank at global step 7"):
        guard.on_before_backward(Trainer(True), None, torch.tensor(1.0))
    with pytest.raises(Exception, match="loss is inf"):
        guard.on_before_backward(Trainer(False), None, torch.tensor(float("inf")))


def test_throughput_summary_and_logged_metrics(tmp_path):
    cfg = toy_config(tmp_path, max_steps=12)
    cfg["trainer"]["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path)}}
    cfg["throughput"] = {"window": 4, "log_every_n_steps": 2, "summary_json": str(tmp_path / "perf.json")}
    assert fit_in_process(write_config(tmp_path / "c.yaml", cfg)) == 0

    summary = json.loads((tmp_path / "perf.json").read_text())
    assert summary["world_size"] == 1 and summary["measured_steps"] == 12 - 2  # default skip_first_steps=2
    assert summary["samples_per_s"] > 0
    assert math.isclose(summary["tokens_per_s"], summary["samples_per_s"] * 8)  # ToyModule.tokens_per_sample
    assert summary["peak_mem_gib_rank0"] > 0.01  # this process holds torch + Lightning

    rows = list(csv.DictReader(open(next(tmp_path.glob("lightning_logs/version_*/metrics.csv")))))
    logged = [r for r in rows if r.get("perf/samples_per_s")]
    assert len(logged) >= 4 and all(float(r["perf/samples_per_s"]) > 0 for r in logged)


def test_throughput_rejects_bad_settings():
    with pytest.raises(ValueError, match="window"):
        ThroughputMonitor(window=0)


def test_batch_size_of_common_batch_shapes():
    assert batch_size_of(torch.zeros(3, 5)) == 3
    assert batch_size_of({"label": [1, 2], "tokens": torch.zeros(6, 2)}) == 6
    assert batch_size_of((torch.zeros(2), torch.zeros(9))) == 2
    with pytest.raises(TypeError):
        batch_size_of({"path": "a.mp4"})


def test_every_run_gets_the_scale_callbacks_and_step_seed_follows_the_run_seed(tmp_path):
    import warnings

    import lightning as L

    from lightning_modules.checkpointing import PeriodicCheckpoint
    from lightning_modules.cli import NBPLightningCLI
    from lightning_modules.resumable import StepSeed

    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    config = write_config(tmp_path / "c.yaml", toy_config(tmp_path, max_steps=1))
    cli = NBPLightningCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                          args=["--config", str(config), "--seed_everything", "7"], run=False)
    kinds = {type(cb) for cb in cli.trainer.callbacks}
    assert {PeriodicCheckpoint, NonFiniteLossGuard, ThroughputMonitor, StepSeed} <= kinds
    assert next(cb for cb in cli.trainer.callbacks if isinstance(cb, StepSeed)).seed == 7
