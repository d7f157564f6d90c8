"""Sampling and evaluation work where Lightning cannot be imported (the install without the train extra).

Each check runs in a fresh process whose import system refuses `lightning` (and its old names), so any
import of it on the way fails loudly. The model files are real: a Lightning checkpoint written by a
short NBPModule fit, and the model.pt exported at its end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from lightning_modules.nbp_module import NBPModule
from lightning_modules.token_data import TokenDataModule
from tests.token_caches import write_token_cache
from tokenizer import TokenizerConfig, VideoTokenizer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
GRID = (5, 8, 8)  # the synthetic tokenizer preset: 17x32x32 pixels -> 5x8x8 tokens
BLOCK_LIGHTNING = textwrap.dedent("""
    import importlib.abc, sys

    class NoLightning(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, NoLightning())
""")


def run_without_lightning(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_LIGHTNING + textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=240)


def run_nbp_without_lightning(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_without_lightning(f"""
        import sys
        from nbp.cli import main
        code = main({args!r})
        assert not any(m.partition(".")[0] == "lightning" for m in sys.modules)
        raise SystemExit(code)
    """, cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tokenizer file, and a transformer trained for two steps on tokens of its vocabulary."""
    root = tmp_path_factory.mktemp("nolightning")
    torch.manual_seed(0)
    tokenizer = VideoTokenizer(TokenizerConfig.from_preset("synthetic", base_channels=8, norm_groups=4))
    tokenizer.save(root / "tokenizer.pt")
    rng = np.random.default_rng(0)
    n, classes = 16, 6
    ids = rng.integers(0, tokenizer.vocab_size, size=(n, *GRID))
    write_token_cache(root / "cache", ids, np.arange(n) % classes, tokenizer.vocab_size, classes, frames=17,
                      resolution=(32, 32), shard_size=16)
    module = NBPModule(preset="tiny", overrides=dict(block=[1, 1, 8], first_block="hybrid", condition="class",
                                                     n_layer=1, n_head=2, n_embd=32, dropout=0.0), warmup_steps=0)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=2, default_root_dir=root, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=TokenDataModule(train_cache=str(root / "cache"), batch_size=4))
    checkpoints = root / "checkpoints"
    return {"root": root, "tokenizer": root / "tokenizer.pt", "ckpt": next(checkpoints.glob("*.ckpt")),
            "model_pt": checkpoints / "model.pt", "module": module}


def test_the_block_really_blocks(tmp_path):
    proc = run_nbp_without_lightning(["train", "fit", "--config", str(ROOT / "configs/nbp/synthetic.yaml")], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == ("nbp: error: nbp train needs Lightning, which is not installed; install the "
                                   "train extra: pip install 'nbp-video[train]' (or bash scripts/install.sh)")


def test_generate_reads_the_checkpoint_and_model_pt(trained, tmp_path):
    proc = run_without_lightning(f"""
        import json, sys, torch
        from nbp.sampling import generate, load_model
        from tokenizer import VideoTokenizer

        tokenizer = VideoTokenizer.load({str(trained["tokenizer"])!r})
        probe = (torch.arange(2 * {GRID[0] * GRID[1] * GRID[2]}) * 7 % tokenizer.vocab_size).view(2, -1)
        out = {{}}
        for name in ("ckpt", "model_pt"):
            model = load_model({str(trained["ckpt"])!r} if name == "ckpt" else {str(trained["model_pt"])!r})
            video = generate(model, tokenizer, cond=[1, 4], seed=0)
            with torch.no_grad():
                logits = model(probe, torch.tensor([1, 4]))
            out[name] = dict(shape=list(video.shape), dtype=str(video.dtype), logits=logits[0, :3, :4].tolist())
        assert not any(m.partition(".")[0] == "lightning" for m in sys.modules)
        print(json.dumps(out))
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # Both files rebuild the trained network: the same logits as the module that was trained.
    model = trained["module"].model.eval()
    probe = (torch.arange(2 * model.config.num_tokens) * 7 % model.config.vocab_size).view(2, -1)
    with torch.no_grad():
        expected = model(probe, torch.tensor([1, 4]))[0, :3, :4]
    for name in ("ckpt", "model_pt"):
        torch.testing.assert_close(torch.tensor(out[name]["logits"]), expected, atol=1e-5, rtol=1e-5)
    for name in ("ckpt", "model_pt"):
        assert out[name]["shape"] == [2, 3, 17, 32, 32] and out[name]["dtype"] == "torch.uint8"


def test_nbp_sample_from_a_lightning_checkpoint(trained, tmp_path):
    out = tmp_path / "samples"
    proc = run_nbp_without_lightning(["sample", "--model", str(trained["ckpt"]), "--tokenizer", str(trained["tokenizer"]),
                                      "--classes", "0", "5", "--num", "1", "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.mp4")) == ["OneSquare_00.mp4", "ThreeCircles_00.mp4"]
    assert json.loads((out / "samples.json").read_text())["timings"]["samples"] == 2


def test_nbp_eval_recon(trained, tmp_path):
    report = tmp_path / "recon.json"
    proc = run_nbp_without_lightning(["eval", "recon", "--tokenizer", str(trained["tokenizer"]), "--data.kind", "synthetic",
                                      "--data.videos_per_class", "2", "--data.size", "32", "--data.split", "test",
                                      "--fvd", "false", "--out", str(report)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(report.read_text())
    assert 0 < result["psnr"] < 100 and -1 <= result["ssim"] <= 1
