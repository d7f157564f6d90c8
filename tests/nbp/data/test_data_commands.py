"""`nbp data synthetic` and `nbp bench data` run end to end (tiny settings)."""

import json

import decord

from nbp.cli import main


def test_data_synthetic_command_writes_a_readable_dataset(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["data", "synthetic", "--out", str(out), "--videos-per-class", "2", "--size", "32", "--frames", "5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train_videos"] == 6 and summary["test_videos"] == 6 and summary["size"] == 32
    assert {p.name for p in out.iterdir()} >= {"classInd.txt", "trainlist01.txt", "testlist01.txt", "OneSquare"}
    first = out / (out / "trainlist01.txt").read_text().split()[0]
    reader = decord.VideoReader(str(first))
    assert len(reader) == 5 and reader[0].shape == (32, 32, 3) and reader.get_avg_fps() == 8


def test_data_synthetic_command_user_errors(tmp_path, capsys):
    assert main(["data", "synthetic", "--out", str(tmp_path), "--videos-per-class", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--videos-per-class 1" in err[0]
    assert main(["data", "synthetic", "--out", str(tmp_path), "--size", "3"]) == 2


def test_bench_data_reports_both_methods_on_identical_clips(tmp_path, capsys, synthetic_root):
    argv = ["bench", "data", "--videos", "1", "--seconds", "1.2", "--width", "64", "--height", "48",
            "--size", "32", "--frames", "5", "--rounds", "1"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["identical_clips"] is True and report["clips_timed_per_method"] == 1
    assert report["clips_per_s"]["ours"] > 0 and report["clips_per_s"]["decode_all"] > 0
    assert report["settings"]["source_video"] == {"frames": 30, "fps": 25.0, "shape": [48, 64, 3]}
    assert main(["bench", "data", "--source", str(synthetic_root), "--size", "32", "--rounds", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["identical_clips"] is True and report["clips_timed_per_method"] == 24
