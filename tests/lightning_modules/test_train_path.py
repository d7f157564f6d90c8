"""The training path a user takes: the optimizer kernel, derived and checked fields, --ckpt_path, Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from lightning_modules.nbp_module import NBPModule, given_overrides
from nbp.optim import adam_kernel
from nbp.cli import main as nbp_main
from tests.lightning_modules.launch import (assert_same_weights, fit_in_process, load_weights, nbp_fit_command,
                                            popen, read_steps, run_subprocess, toy_config, write_config)
from tests.lightning_modules.test_distributed import nbp_config
from tests.lightning_modules.test_nbp_module import write_pattern_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return write_pattern_cache(tmp_path_factory.mktemp("path_tokens") / "cache", n=16)


def nbp(root: Path, cache: Path, *, max_steps: int = 3, **overrides) -> Path:
    cfg = nbp_config(root, cache, batch_size=4)
    cfg["trainer"]["max_steps"] = max_steps
    cfg["model"]["init_args"]["overrides"].update(overrides)
    cfg["model"]["init_args"]["total_steps"] = 6  # the schedule must not depend on where a run stopped
    cfg["data"]["init_args"]["val_cache"] = str(cache)
    cfg["checkpoint"] = {"every_n_train_steps": 2, "save_top_k": -1}
    return write_config(root / f"c{max_steps}.yaml", cfg)


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


# ---------------------------------------------------------------------- the optimizer kernel


class FusedAdamModule(L.LightningModule):
    """A linear regression that insists on fused AdamW: what the modules did before the kernel choice."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2, fused=True)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=4)


def test_lightning_refuses_fused_adam_with_clipping_under_mixed_precision(tmp_path):
    """The rule adam_kernel encodes, checked against the installed Lightning with a real bf16-mixed step."""
    common = dict(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(RuntimeError, match="does not allow for gradient clipping"):
        L.Trainer(precision="bf16-mixed", gradient_clip_val=1.0, **common).fit(FusedAdamModule())
    L.Trainer(precision="bf16-mixed", **common).fit(FusedAdamModule())  # no clipping: fused is fine
    L.Trainer(precision="32-true", gradient_clip_val=1.0, **common).fit(FusedAdamModule())  # no AMP: fine


def test_adam_kernel_rule():
    params = [torch.zeros(2, requires_grad=True)]
    assert adam_kernel(params, "bf16-mixed", 1.0)[0] == "foreach"
    assert adam_kernel(params, "16-mixed", 0.5)[0] == "foreach"
    assert adam_kernel(params, "bf16-mixed", None)[0] == "fused"
    assert adam_kernel(params, "bf16-mixed", 0.0)[0] == "fused"
    assert adam_kernel(params, "32-true", 1.0)[0] == "fused"
    assert adam_kernel([torch.zeros(2, dtype=torch.long)], "32-true", None)[0] == "foreach"


def test_bf16_mixed_clipped_transformer_trains_and_says_foreach_once(tmp_path, cache, capsys):
    cfg = nbp(tmp_path, cache)
    assert fit_in_process(cfg, "--trainer.precision", "bf16-mixed") == 0
    out = capsys.readouterr().out
    assert out.count("optimizer: foreach Adam (") == 1 and "precision=bf16-mixed (clip 1.0)" in out
    assert fit_in_process(cfg, "--trainer.precision", "bf16-mixed", "--trainer.gradient_clip_val", "0",
                          "--trainer.default_root_dir", str(tmp_path / "noclip")) == 0
    assert capsys.readouterr().out.count("optimizer: fused Adam (") == 1


def test_fsdp_clips_through_the_root_module():
    """Under FSDP the norm must be reduced over shards: the root FSDP module's clip_grad_norm_ is used."""
    calls = []

    class Root(nn.Module):
        def clip_grad_norm_(self, max_norm):
            calls.append(max_norm)

    class Strategy:
        model = Root()

    class Trainer:
        strategy = Strategy()
        gradient_clip_val = 0.5

    module = NBPModule()
    module._trainer = Trainer()
    module.configure_gradient_clipping(optimizer=None, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
    assert calls == [0.5]


# ---------------------------------------------------------------------- derived fields and start-up checks


def test_null_overrides_are_left_out():
    assert given_overrides({"vocab_size": None, "grid": "None", "num_classes": "null", "n_layer": 2}) == {"n_layer": 2}


def test_null_on_the_command_line_takes_the_cache_values(tmp_path, cache, capsys):
    cfg = nbp(tmp_path, cache, vocab_size=999, grid=[9, 9, 9], num_classes=50)
    args = ["--model.init_args.overrides.vocab_size", "null", "--model.init_args.overrides.grid", "null",
            "--model.init_args.overrides.num_classes", "null"]
    assert fit_in_process(cfg, *args) == 0
    model = NBPModule.load_model(tmp_path / "checkpoints" / "last.ckpt")
    assert (model.config.vocab_size, model.config.grid, model.config.num_classes) == (16, (2, 4, 4), 3)


@pytest.mark.parametrize("override, words", [
    ({"vocab_size": 64000}, "the data's tokenizer has 16 codes but the model vocab_size is 64000"),
    ({"num_classes": 101}, "the data has 3 classes but the model num_classes is 101"),
    ({"grid": [5, 16, 16]}, "the data has latent grid [2, 4, 4] but the model config has grid [5, 16, 16]"),
])
def test_fields_that_disagree_with_the_cache_fail_at_start(tmp_path, cache, capsys, override, words):
    assert fit_in_process(nbp(tmp_path, cache, **override)) == 2
    line = error_line(capsys)
    assert line.startswith("nbp: error: ") and words in line and "null" in line
    assert not (tmp_path / "checkpoints").exists()  # nothing trained


def test_warmup_longer_than_the_run_fails_at_start(tmp_path, cache, capsys):
    assert fit_in_process(nbp(tmp_path, cache), "--model.init_args.warmup_steps", "6") == 2
    line = error_line(capsys)
    assert "warmup_steps=6 is not shorter than the run (6 optimizer steps)" in line
    assert not (tmp_path / "checkpoints").exists()


# ---------------------------------------------------------------------- --ckpt_path


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, cache) -> Path:
    """6 steps, a checkpoint every 2 (all kept), final weights dumped."""
    root = tmp_path_factory.mktemp("reference")
    assert fit_in_process(nbp(root, cache, max_steps=6, dropout=0.1)) == 0
    return root


@pytest.mark.slow
def test_fit_resumes_exactly_from_a_named_checkpoint(tmp_path, cache, reference_run):
    """A fresh run started from step=2.ckpt of another run ends where the reference ended; timed end to end."""
    named = reference_run / "checkpoints" / "step=2.ckpt"
    start = time.perf_counter()
    done = run_subprocess(nbp_fit_command(nbp(tmp_path, cache, max_steps=6, dropout=0.1), "--ckpt_path", str(named)))
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(load_weights(tmp_path / "dump"), load_weights(reference_run / "dump"), atol=1e-6)
    if os.environ.get("NBP_CONFIG_REPORT"):
        with open(os.environ["NBP_CONFIG_REPORT"], "a") as f:
            f.write(json.dumps({"named_resume_wall_s": round(seconds, 2), "steps_after_resume": 4}) + "\n")


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_validate_test_predict_from_any_checkpoint(tmp_path, cache, reference_run, stage, capsys):
    cfg = nbp(reference_run, cache, max_steps=6, dropout=0.1)
    hpc = reference_run / "hpc_ckpt_1.ckpt"  # where Lightning's SLURM requeue handler saves
    if not hpc.exists():
        shutil.copy(reference_run / "checkpoints" / "step=4.ckpt", hpc)
    for ckpt in (str(reference_run / "checkpoints" / "step=2.ckpt"), "last", "best", "hpc"):
        code = nbp_main(["train", stage, "--config", str(cfg), "--ckpt_path", ckpt])
        out = capsys.readouterr()
        assert code == 0, (ckpt, out.err[-2000:])
        if stage != "predict":
            assert f"{stage[:4] if stage == 'test' else 'val'}/bits_per_token" in out.out


def test_best_resolves_to_the_recorded_best_checkpoint(reference_run):
    from lightning_modules.checkpointing import find_best_checkpoint

    # monitor "step", mode max: the best is the newest periodic checkpoint
    assert find_best_checkpoint(reference_run / "checkpoints").name == "step=6.ckpt"


def test_checkpoint_of_another_kind_is_one_line(tmp_path, cache, reference_run, capsys):
    toy_root = tmp_path / "toy"
    assert fit_in_process(write_config(toy_root / "c.yaml", toy_config(toy_root, max_steps=2))) == 0
    cfg = nbp(reference_run, cache, max_steps=6, dropout=0.1)
    weights_file = tmp_path / "model.pt"  # what `nbp sample` reads: weights and config, no trainer state
    torch.save({"config": {}, "state_dict": {"w": torch.zeros(2)}}, weights_file)
    cases = [
        (toy_root / "checkpoints" / "last.ckpt", "is a checkpoint of ToyModule, but the config trains NBPModule"),
        (weights_file, "is not a Lightning checkpoint written by nbp train"),
        (tmp_path / "missing.ckpt", "no such file or folder"),
    ]
    for stage in ("fit", "validate"):
        for path, words in cases:
            assert nbp_main(["train", stage, "--config", str(cfg), "--ckpt_path", str(path)]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("nbp: error: ") and words in err[0], err


def test_checkpoint_of_another_architecture_is_one_line(tmp_path, cache, reference_run, capsys):
    wider = nbp(tmp_path, cache, max_steps=6, n_embd=64)
    assert nbp_main(["train", "validate", "--config", str(wider), "--ckpt_path",
                     str(reference_run / "checkpoints" / "step=2.ckpt")]) == 2
    line = error_line(capsys)
    assert "the checkpoint's model differs from the config's (n_embd: checkpoint 32, config 64)" in line


# ---------------------------------------------------------------------- Ctrl-C


@pytest.mark.slow
def test_ctrl_c_exits_130_and_leaves_a_resumable_checkpoint(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", toy_config(tmp_path, max_steps=10**6, total_steps=10**6))
    proc = popen(nbp_fit_command(cfg))
    steps_file = tmp_path / "dump" / "steps_rank0.jsonl"
    deadline = time.monotonic() + 120
    while not (steps_file.exists() and len(steps_file.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:] if proc.poll() else "slow"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, output[-3000:]
    assert output.rstrip().endswith("nbp: interrupted")
    assert "Traceback" not in output

    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    done = len(read_steps(tmp_path / "dump"))
    assert last["global_step"] == done  # saved at the step boundary after the last step taken

    more = write_config(tmp_path / "more.yaml", toy_config(tmp_path, max_steps=done + 3, total_steps=10**6))
    resumed = run_subprocess(nbp_fit_command(more, "--ckpt_path", "last"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(read_steps(tmp_path / "dump")) == list(range(done + 3))  # continued, nothing redone or skipped
