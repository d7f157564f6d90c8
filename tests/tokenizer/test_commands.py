"""`nbp eval recon` and `nbp bench tokenizer` end to end through the `nbp` dispatcher."""

import json

import pytest
import torch

from nbp.cli import main as nbp_main
from nbp.data import DatasetConfig, build_dataset
from nbp.pixels import model_to_unit, to_model
from tests.tokenizer.helpers import tiny_config
from tokenizer import VideoTokenizer


@pytest.fixture
def tokenizer_file(tmp_path):
    path = tmp_path / "tok.pt"
    VideoTokenizer(tiny_config()).save(path)
    return path


def test_eval_recon_matches_an_independent_computation(tokenizer_file, synthetic_root, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("NBP_OFFLINE", "1")  # no detector download: fvd is left out with a reason
    monkeypatch.delenv("NBP_FVD_DETECTOR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "recon.json"
    argv = ["eval", "recon", "--tokenizer", str(tokenizer_file), "--data.kind", "synthetic", "--data.root",
            str(synthetic_root), "--data.split", "test", "--data.frames", "9", "--data.size", "16",
            "--batch_size", "4", "--out", str(out)]
    assert nbp_main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert json.loads(out.read_text()) == result
    assert "fvd" not in result and "no fvd" in captured.err

    # Independent: per-video MSE -> PSNR by hand, and the set of ids used.
    tok = VideoTokenizer.load(tokenizer_file)
    data = build_dataset(DatasetConfig(kind="synthetic", root=str(synthetic_root), split="test", frames=9, size=16))
    videos = torch.stack([data[i]["video"] for i in range(len(data))])
    with torch.no_grad():
        ids = tok.encode(to_model(videos))
        pred = model_to_unit(tok.decode(ids))
    mse = (pred - videos.float() / 255).pow(2).flatten(1).mean(1)
    assert result["videos"] == len(data) and result["skipped"] == 0
    assert result["psnr"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), abs=1e-3)
    assert result["codes_used"] == ids.unique().numel()
    assert result["code_usage"] == pytest.approx(ids.unique().numel() / tok.vocab_size)
    assert -1 <= result["ssim"] <= 1


def test_eval_recon_bad_tokenizer_path(synthetic_root, capsys):
    code = nbp_main(["eval", "recon", "--tokenizer", "missing.pt", "--data.kind", "synthetic",
                     "--data.root", str(synthetic_root), "--data.size", "16"])
    assert code == 2 and "missing.pt" in capsys.readouterr().err


def test_bench_tokenizer_prints_speeds(tokenizer_file, capsys):
    assert nbp_main(["bench", "tokenizer", "--tokenizer", str(tokenizer_file), "--frames", "5", "--size", "16",
                     "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["grid"] == [2, 4, 4] and result["dtype"] == "fp32"
    assert result["encode_clips_per_s"] > 0 and result["decode_clips_per_s"] > 0
