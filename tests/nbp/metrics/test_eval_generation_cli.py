"""`nbp eval ucf101` and `nbp eval k600` end to end: tiny random generator, real video files, a cheap detector."""

import json

import pytest
import torch

from nbp.cli import main
from nbp.data import DatasetConfig, build_dataset
from tests.nbp.metrics.generators import write_tiny_generator
from tests.nbp.metrics.standins import save_scripted_pooling_detector


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    path = tmp_path_factory.mktemp("detector") / "pooling_torchscript.pt"
    save_scripted_pooling_detector(path)
    return path


def _run(capsys, args):
    assert main(args) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err.strip().splitlines()[-1]


def test_eval_ucf101_generates_in_shards_and_resumes(synthetic_root, detector, tmp_path, capsys):
    model, tok = write_tiny_generator(tmp_path, "class")
    out, cache = tmp_path / "ucf.json", tmp_path / "cache"
    args = ["eval", "ucf101", "--model", str(model), "--tokenizer", str(tok), "--data", str(synthetic_root),
            "--num-samples", "4", "--shard-size", "2", "--batch-size", "2", "--detector", str(detector),
            "--workers", "0", "--cache", str(cache), "--out", str(out), "--seed", "3"]
    first, summary = _run(capsys, args)
    assert summary.startswith("nbp eval ucf101: FVD") and json.loads(out.read_text()) == first
    assert first["shards"] == {"total": 2, "generated_this_run": 2}
    assert first["counts"] == {"real": 4, "fake": 4} and first["protocol"] == "nbp"
    shard = torch.load(cache / "shard_00001.pt", weights_only=True)
    assert shard["videos"].dtype == torch.uint8 and shard["videos"].shape == (2, 3, 17, 32, 32)
    assert shard["cond"].min() >= 0 and shard["cond"].max() < 6  # labels of the 6 synthetic classes

    # a rerun skips finished shards; a lost shard is regenerated identically (its own seed)
    (cache / "shard_00001.pt").unlink()
    resumed, _ = _run(capsys, args)
    assert resumed["shards"]["generated_this_run"] == 1
    assert torch.equal(torch.load(cache / "shard_00001.pt", weights_only=True)["videos"], shard["videos"])
    assert resumed["fvd"] == pytest.approx(first["fvd"], rel=1e-12)

    # the cache refuses other settings instead of mixing samples
    assert main(args[:-2] + ["--out", str(out), "--temperature", "0.5"]) == 2
    assert "temperature" in capsys.readouterr().err
    # the precision is part of those settings: the cache holds float32 samples (the CPU default)
    assert main(args[:-2] + ["--out", str(out), "--dtype", "bfloat16"]) == 2
    assert "dtype" in capsys.readouterr().err
    assert main(args[:-2] + ["--out", str(out), "--dtype", "fp8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dtype 'fp8' is invalid" in err[0]


def test_eval_k600_scores_prediction_fvd_psnr_ssim(synthetic_root, detector, tmp_path, capsys):
    model, tok = write_tiny_generator(tmp_path, "frames")
    args = ["eval", "k600", "--model", str(model), "--tokenizer", str(tok), "--data", str(synthetic_root),
            "--kind", "ucf101", "--split", "test", "--num-samples", "3", "--shard-size", "2", "--detector", str(detector),
            "--workers", "0", "--out", str(tmp_path / "k600.json")]
    report, summary = _run(capsys, args)
    assert "PSNR" in summary and report["context_frames"] == 5
    assert report["protocol_settings"]["pre_resize"] == 64
    assert report["predicted_frames_scored"] == 3 * 12
    assert 0 < report["psnr"] < 60 and -1 <= report["ssim"] <= 1 and report["fvd"] > 0
    # the cached prediction has 17 frames; the context part is the tokenizer's reconstruction, not a copy
    truth = build_dataset(DatasetConfig(kind="ucf101", root=str(synthetic_root), split="test", frames=17, size=32))[0]
    pred = torch.load(tmp_path / "k600_samples" / "shard_00000.pt", weights_only=True)["videos"][0]
    assert pred.shape == truth["video"].shape and not torch.equal(pred[:, :5], truth["video"][:, :5])


def test_wrong_model_kind_is_one_line_error(synthetic_root, detector, tmp_path, capsys):
    model, tok = write_tiny_generator(tmp_path, "frames")
    args = ["eval", "ucf101", "--model", str(model), "--tokenizer", str(tok), "--data", str(synthetic_root),
            "--detector", str(detector), "--out", str(tmp_path / "r.json")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "class-conditional" in err[0]
