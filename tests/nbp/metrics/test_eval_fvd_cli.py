import json

import numpy as np
import pytest
import torch

from nbp.cli import main
from nbp.data import DatasetConfig, build_dataset
from nbp.files import sha256_file
from nbp.metrics.frechet import frechet_distance
from nbp.metrics.protocols import PRESETS
from tests.nbp.metrics.standins import ScriptedPoolingDetector, save_scripted_pooling_detector


@pytest.fixture(scope="module")
def pooling_detector(tmp_path_factory):
    path = tmp_path_factory.mktemp("detector") / "pooling_torchscript.pt"
    save_scripted_pooling_detector(path)
    return path


def _independent_fvd(real_root, fake_root, size, ddof=1):
    """Features from decoded clips through the protocol's preprocessing, statistics with np.cov."""
    det = ScriptedPoolingDetector()
    feats = []
    for root in (real_root, fake_root):
        ds = build_dataset(DatasetConfig(kind="folder", root=str(root), frames=16, fps=None, size=size, clip="center"))
        videos = torch.stack([ds[i]["video"] for i in range(len(ds))])
        feats.append(det(PRESETS["nbp"].preprocess(videos)).double().numpy())
    (r, f) = feats
    return frechet_distance(r.mean(0), np.cov(r, rowvar=False, ddof=ddof), f.mean(0), np.cov(f, rowvar=False, ddof=ddof))


def test_eval_fvd_reports_the_score_of_two_folders(synthetic_root, pooling_detector, tmp_path, capsys):
    real, fake = synthetic_root / "OneSquare", synthetic_root / "ThreeCircles"
    out = tmp_path / "report.json"
    args = ["eval", "fvd", "--real", str(real), "--fake", str(fake), "--protocol", "nbp", "--size", "32",
            "--detector", str(pooling_detector), "--workers", "0", "--batch-size", "3", "--out", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert json.loads(out.read_text()) == report
    summary = captured.err.strip().splitlines()[-1]
    assert summary.startswith("nbp eval fvd: FVD") and "protocol nbp" in summary
    assert report["protocol"] == "nbp" and report["counts"] == {"real": 4, "fake": 4}
    assert report["detector"]["sha256"] == sha256_file(pooling_detector)
    assert report["comparable_counts"] is False
    assert report["fvd"] == pytest.approx(_independent_fvd(real, fake, 32), rel=1e-6)
    assert report["fvd"] > 1e-3


def test_eval_fvd_bad_inputs_are_one_line_exit_2(synthetic_root, pooling_detector, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the default report would go
    base = ["eval", "fvd", "--fake", str(synthetic_root / "OneSquare"), "--detector", str(pooling_detector)]
    assert main(base + ["--real", str(tmp_path / "missing")]) == 2
    assert "neither a folder of videos nor a dataset config" in capsys.readouterr().err
    assert main(base + ["--real", str(synthetic_root / "OneCircle"), "--protocol", "fid"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "valid: styleganv, nbp, tats" in err[0]
    assert not (tmp_path / "fvd_report.json").exists()


def test_eval_fvd_takes_a_dataset_config_file(synthetic_root, pooling_detector, tmp_path, capsys):
    config = tmp_path / "real.yaml"
    config.write_text(f"kind: ucf101\nroot: {synthetic_root}\nsplit: test\nframes: 16\nfps: 8\nsize: 32\n")
    args = ["eval", "fvd", "--real", str(config), "--fake", str(synthetic_root / "OneSquare"), "--size", "32",
            "--detector", str(pooling_detector), "--workers", "0", "--out", str(tmp_path / "r.json")]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["real"]["dataset"]["kind"] == "ucf101" and report["real"]["dataset"]["split"] == "test"
    assert report["counts"] == {"real": 6, "fake": 4}  # one test video per synthetic class
