"""The small-scale recipe of docs/local-runs.md end to end, for the UCF-101 and the Kinetics-600 path.

The paper configs plus configs/local.yaml on one CPU: train the tokenizer, tokenize the train and
held-out splits, train the transformer (its grid, vocabulary and classes taken from the cache), evaluate.
Real video files in each dataset's documented layout; the only stand-in is the FVD detector (the
I3D weights are a download). Run length and widths are cut further than the docs' commands so the
test takes a minute; the docs' commands are these with those flags left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_modules.nbp_module import NBPModule
from nbp.cli import main as nbp_main
from nbp.token_cache import read_meta
from tests.lightning_modules.test_shipped_configs import kinetics_layout
from tests.nbp.metrics.standins import save_scripted_pooling_detector

REPO = Path(__file__).resolve().parents[2]
SIZE = 64  # the synthetic tokenizer preset: 17x64x64 -> 5x16x16, rows of 16 as in the paper configs

PATHS = {
    "ucf101": {"tokenizer": "configs/tokenizer/ucf101.yaml", "nbp": "configs/nbp/ucf101_base.yaml",
               "train": "train", "held_out": "test"},
    "k600": {"tokenizer": "configs/tokenizer/k600.yaml", "nbp": "configs/nbp/k600_base.yaml",
             "train": "train", "held_out": "val"},
}
SHORTER = ["--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
           "--model.init_args.warmup_steps", "1", "--trainer.enable_progress_bar", "false"]


def run(*argv: str) -> None:
    code = nbp_main(list(argv))
    assert code == 0, f"nbp {' '.join(argv)} exited {code}"


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["ucf101", "k600"])
def test_recipe_runs_end_to_end(dataset, synthetic_root, tmp_path, capsys):
    paths = PATHS[dataset]
    data = Path(synthetic_root) if dataset == "ucf101" else kinetics_layout(Path(synthetic_root), tmp_path / "k600")
    tok_dir, nbp_dir, tokens = tmp_path / "tokenizer", tmp_path / "nbp", tmp_path / "tokens"
    tokenizer = tok_dir / "tokenizer.pt"
    local = str(REPO / "configs" / "local.yaml")

    # 1. tokenizer: the paper config on one CPU, with the small synthetic preset
    val_root = [] if dataset == "ucf101" else ["--data.init_args.val.root", str(data), "--data.init_args.val.size", str(SIZE)]
    run("train", "fit", "--config", str(REPO / paths["tokenizer"]), "--config", local,
        "--model.init_args.preset", "synthetic", "--data.init_args.train.root", str(data),
        "--data.init_args.train.size", str(SIZE), *val_root, "--trainer.default_root_dir", str(tok_dir),
        "--model.init_args.export_path", str(tokenizer), "--model.init_args.loss.disc_channels", "8", *SHORTER)
    assert tokenizer.is_file()

    # 2. tokenize the training split and the held-out split the nbp config names
    for split in (paths["train"], paths["held_out"]):
        run("tokenize", "--tokenizer", str(tokenizer), "--data.kind", dataset, "--data.root", str(data),
            "--data.split", split, "--data.size", str(SIZE), "--out", str(tokens / split), "--no-progress")
    meta = read_meta(tokens / "train")
    assert meta.grid == (5, 16, 16)

    # 3. the transformer: the paper config on one CPU, tiny preset; grid / vocab / classes from meta.json
    run("train", "fit", "--config", str(REPO / paths["nbp"]), "--config", local, "--model.init_args.preset", "tiny",
        "--data.init_args.train_cache", str(tokens / paths["train"]),
        "--data.init_args.val_cache", str(tokens / paths["held_out"]),
        "--trainer.default_root_dir", str(nbp_dir), "--model.init_args.overrides.n_layer", "1",
        "--model.init_args.overrides.n_embd", "32", "--model.init_args.overrides.n_head", "2",
        "--data.init_args.batch_size", "2", *SHORTER)
    model = NBPModule.load_model(nbp_dir / "checkpoints" / "model.pt")
    assert (model.config.grid, model.config.vocab_size) == (meta.grid, meta.vocab_size)
    if dataset == "ucf101":
        assert model.config.num_classes == meta.num_classes == 6
    capsys.readouterr()

    # 4. evaluation (the FVD detector is a stand-in)
    detector = tmp_path / "detector.pt"
    save_scripted_pooling_detector(detector)
    report = tmp_path / "eval.json"
    extra = ["--split", "val"] if dataset == "k600" else []
    run("eval", dataset, "--model", str(nbp_dir / "checkpoints" / "model.pt"), "--tokenizer", str(tokenizer),
        "--data", str(data), *extra, "--num-samples", "2", "--batch-size", "2", "--detector", str(detector),
        "--workers", "0", "--out", str(report))
    result = json.loads(report.read_text())
    assert result["fvd"] >= 0 and result["counts"]["fake"] == 2
    assert torch.isfinite(torch.tensor(result["fvd"]))
