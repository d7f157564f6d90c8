"""`nbp bench streaming`: its JSON report and argument checks (the timings themselves are read, never asserted)."""

import json

import pytest

from nbp.cli import main


def test_report_has_each_length_and_every_push(capsys):
    assert main(["bench", "streaming", "--frames", "17", "33", "--rounds", "1", "--threads", "1",
                 "--batch-size", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["grid"] == [5, 8, 8] and report["window"] == 5 and report["batch_size"] == 2
    rows = report["by_length"]
    assert [(r["frames"], r["latent_frames"]) for r in rows] == [(17, 5), (33, 9)]
    for row in rows:
        assert 0 < row["time_to_first_frame_s"] < row["total_s"]
        assert row["frames_per_s"] == pytest.approx(2 * row["frames"] / row["total_s"], rel=0.01)
        assert row["generate_s"] > 0
    decoder = report["decoder"]
    assert decoder["latent_frames"] == 9 and len(decoder["push_s"]) == 9 and min(decoder["push_s"]) > 0
    assert sorted(map(int, decoder["whole_clip_decode_s_by_latent_frames"])) == [2, 5, 9]


@pytest.mark.parametrize("extra,message", [
    (["--frames", "18"], "--frames 18 is invalid"),
    (["--preset", "huge"], "--preset 'huge'"),
    (["--rounds", "0"], "--rounds 0"),
    (["--model", "model.pt"], "--model and --tokenizer go together"),
    (["--dtype", "int8"], "--dtype 'int8'"),
])
def test_bad_arguments_are_one_line_errors(capsys, extra, message):
    assert main(["bench", "streaming", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
