"""`nbp demo` end to end in real processes, at a tiny budget: interrupted, resumed, reused.

One fixture runs the demo three times into the same folder:
1. interrupted by SIGINT (Ctrl-C) as soon as the 'nbp' stage (training the transformers) has started
   its first worker process;
2. a plain rerun, which must reuse the finished stages and complete the rest;
3. another rerun, which must reuse everything and finish quickly.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lightning_modules.demo.judges import count_objects, shown_colours
from nbp.data.synthetic import CLASS_NAMES, class_colours, num_objects

MINUTES = "0.3"
FIRST_STAGES = ("data", "tokenizer", "tokens")
ALL_STAGES = FIRST_STAGES + ("nbp", "sample", "frame_prediction")


def demo_command(out: Path) -> list[str]:
    # 2 threads: the transformers train in two lanes, each in its own spawned process
    return [sys.executable, "-m", "nbp", "demo", "--out", str(out), "--minutes", MINUTES, "--threads", "2"]


def run_demo(out: Path) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    proc = subprocess.run(demo_command(out), capture_output=True, text=True, timeout=240)
    return proc, time.perf_counter() - started


def _default_sigint() -> None:
    # A background job (`cmd &` in a script, nohup) starts with SIGINT ignored, the child inherits
    # that, and Python then installs no KeyboardInterrupt handler: give the demo a terminal's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_demo_until(out: Path, line: str) -> subprocess.CompletedProcess:
    """Run the demo and press Ctrl-C (SIGINT) as soon as `line` appears on its stderr."""
    proc = subprocess.Popen(demo_command(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    seen = []
    for text in proc.stderr:
        seen.append(text)
        if line in text:
            proc.send_signal(signal.SIGINT)
            break
    stdout, rest = proc.communicate(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, "".join(seen) + rest)


def spawned_workers() -> list[str]:
    """Command lines of live processes started by multiprocessing's "spawn" (the demo's training lanes)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process ended while we looked
        if "spawn_main" in text:
            found.append(text)
    return found


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    interrupted = run_demo_until(out, "transformer for")
    markers_after_interrupt = {stage: (out / stage / "done.json").is_file() for stage in ALL_STAGES}
    workers_after_interrupt = spawned_workers()
    completed, completed_seconds = run_demo(out)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary_after_completion = json.loads((out / "summary.json").read_text())
    reused, reused_seconds = run_demo(out)
    return {"out": out, "interrupted": interrupted, "markers_after_interrupt": markers_after_interrupt,
            "workers_after_interrupt": workers_after_interrupt,
            "completed": completed, "completed_seconds": completed_seconds,
            "summary_after_completion": summary_after_completion,
            "reused": reused, "reused_seconds": reused_seconds}


@pytest.mark.slow
def test_interrupt_keeps_finished_stages(demo_runs):
    proc = demo_runs["interrupted"]
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "interrupted" in proc.stderr
    markers = demo_runs["markers_after_interrupt"]
    assert all(markers[stage] for stage in FIRST_STAGES), markers
    assert not any(markers[stage] for stage in ("nbp", "sample", "frame_prediction")), markers
    assert demo_runs["workers_after_interrupt"] == []  # no training process outlived the demo


@pytest.mark.slow
def test_rerun_reuses_finished_stages_and_completes(demo_runs):
    err = demo_runs["completed"].stderr
    for stage in FIRST_STAGES:
        assert f"stage '{stage}': reusing" in err
    assert "stage 'nbp': clearing the unfinished attempt" in err
    assert "stage 'frame_prediction': done" in err
    assert demo_runs["summary_after_completion"]["reused_stages"] == list(FIRST_STAGES)


@pytest.mark.slow
def test_summary_has_sane_numbers(demo_runs):
    summary = json.loads((demo_runs["out"] / "summary.json").read_text())
    tok = summary["tokenizer"]
    assert math.isfinite(tok["psnr"]) and tok["psnr"] > 0
    assert -1.0 <= tok["ssim"] <= 1.0
    assert 0.0 < tok["code_usage"] <= 1.0
    for name in ("nbp", "ntp"):
        assert 0.0 < summary[name]["val_bits_per_token"] < 20.0  # log2(200 codes) ~ 7.6 bits at chance
        assert summary[name]["sampling_seconds"] > 0
    sample_stage = json.loads((demo_runs["out"] / "sample" / "done.json").read_text())
    assert sample_stage["result"]["nbp"]["sampling_rounds"] == sample_stage["result"]["ntp"]["sampling_rounds"] == 3
    # rows of the grid's width: the first latent frame token by token, then the other rows; NTP: one step per token
    from lightning_modules.demo.settings import SIZE

    tokens_stage = json.loads((demo_runs["out"] / "tokens" / "done.json").read_text())["result"]
    frames, height, width = tokens_stage["train"]["grid"]
    assert (height, width) == (SIZE // 8, SIZE // 8)  # 8x spatial compression
    assert summary["nbp"]["sampling_steps"] == height * width + (frames - 1) * height
    assert summary["ntp"]["sampling_steps"] == frames * height * width
    assert summary["speedup"] == pytest.approx(summary["ntp"]["sampling_seconds"] / summary["nbp"]["sampling_seconds"])
    # The demo's 200-code tokenizer that decodes every latent frame on its own, and transformers whose
    # vocabulary came from its token cache.
    from nbp.sampling import load_model
    from tokenizer import VideoTokenizer

    tokenizer = VideoTokenizer.load(summary["outputs"]["tokenizer"])
    assert tokenizer.vocab_size == 200 and tokenizer.config.decoder_time_kernel == 1
    assert tokenizer.config.spatial_downsample == 8 and tokenizer.config.patch_size == 4
    tokenizer_run = yaml.safe_load((demo_runs["out"] / "tokenizer" / "config.yaml").read_text())
    assert tokenizer_run["model"]["init_args"]["loss"]["anchor_weight"] == 0.0  # no colour anchor at 8x8-px codes
    assert tokenizer_run["data"]["init_args"]["train"]["size"] == SIZE
    configs = {name: load_model(summary["outputs"][name], "cpu").config
               for name in ("nbp_model", "ntp_model", "frames_model")}
    for name, config in configs.items():
        # learned positions for the class models, 3D rotary ones for the frame model, which is wider
        assert config.vocab_size == 200 and config.arch == ("modern" if name == "frames_model" else "reference")
        assert config.n_embd == (96 if name == "frames_model" else 64)  # the frame model is the wider one
    # class samples are guided (the class models learnt a null class); the frame model has no null context
    assert sample_stage["result"]["controls"]["cfg_scale"] == 2.0 and configs["nbp_model"].p_uncond > 0
    assert sample_stage["result"]["controls"]["top_k"] == 20  # the class samples cut the rare codes' tail
    pred = summary["frame_prediction"]
    # the frame model samples cooler than the class models: its context decides the motion
    prediction_stage = json.loads((demo_runs["out"] / "frame_prediction" / "done.json").read_text())
    assert prediction_stage["result"]["controls"]["temperature"] == 0.7
    assert prediction_stage["result"]["controls"]["cfg_scale"] == 1.0
    assert prediction_stage["result"]["controls"]["top_k"] == 50
    assert math.isfinite(pred["psnr"]) and pred["psnr"] > 0 and -1.0 <= pred["ssim"] <= 1.0
    assert 0.0 <= pred["objects"]["found"] <= 1.0
    # the frozen last context frame still shows every object of the clip (they only moved)
    assert pred["copy_last_frame"]["objects"]["found"] > 0.9 and pred["copy_last_frame"]["objects"]["centre_error_px"] > 0
    # two lanes: the class twins one after the other beside the frame model, each twin half the stage
    models = json.loads((demo_runs["out"] / "nbp" / "done.json").read_text())["result"]
    assert models["lanes"] == 2 and models["threads_per_lane"] == 1
    assert models["nbp"]["seconds"] == models["ntp"]["seconds"] == pytest.approx(models["frames"]["seconds"] / 2)
    assert all(models[name]["steps"] > 0 for name in ("nbp", "ntp", "frames"))
    assert set(summary["stages"]) == set(ALL_STAGES)
    for name, path in summary["outputs"].items():
        assert Path(path).exists(), name


@pytest.mark.slow
def test_videos_decode_and_carry_class_names(demo_runs):
    import decord

    out = demo_runs["out"]
    samples = sorted((out / "sample" / "videos").glob("*.mp4"))
    classes = {path.stem.rsplit("_", 1)[0] for path in samples}
    assert classes == set(CLASS_NAMES)
    from lightning_modules.demo.settings import SIZE
    from lightning_modules.demo.judges import looks_square
    from nbp.data.synthetic import is_circle

    colours, frames, counts, shapes = [], [], [], []
    for path in samples:
        reader = decord.VideoReader(str(path))
        assert len(reader) == 17 and reader[0].shape == (SIZE, SIZE, 3), path
        class_id = CLASS_NAMES.index(path.stem.rsplit("_", 1)[0])
        clip = reader.get_batch(range(17)).asnumpy()
        colours.append(shown_colours(clip) == class_colours(class_id))
        per_frame = count_objects(clip)
        frames.extend(per_frame == num_objects(class_id))
        values, times = np.unique(per_frame, return_counts=True)  # ascending: a tie goes to the smaller
        counts.append(values[times.argmax()] == num_objects(class_id))
        shapes.append(looks_square(clip) is (not is_circle(class_id)))
    # The summary judges the written files, so recounting them gives its numbers exactly.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nbp"]["colours_right"] == pytest.approx(sum(colours) / len(colours))
    assert summary["nbp"]["objects_right"] == pytest.approx(sum(frames) / len(frames))
    assert summary["nbp"]["counts_right"] == pytest.approx(sum(counts) / len(counts))
    assert summary["nbp"]["shapes_right"] == pytest.approx(sum(shapes) / len(shapes))
    every = [c and n and s for c, n, s in zip(colours, counts, shapes)]
    assert summary["nbp"]["samples_right"] == pytest.approx(sum(every) / len(every))
    for key in ("colours_right", "objects_right", "counts_right", "shapes_right", "samples_right"):
        assert 0.0 <= summary["ntp"][key] <= 1.0
    assert 0.0 <= summary["tokenizer"]["objects_right"] <= 1.0  # seconds of training: often 0 here
    assert 0.0 <= summary["tokenizer"]["shapes_right"] <= 1.0
    assert summary["tokenizer"]["real_shapes_right"] >= 0.9  # the judge on the held-out videos themselves
    predictions = sorted((out / "frame_prediction" / "videos").glob("*.mp4"))
    assert {path.stem.rsplit("_", 1)[0] for path in predictions} == set(CLASS_NAMES)
    reader = decord.VideoReader(str(predictions[0]))
    assert len(reader) == 17 and reader[0].shape == (SIZE, 2 * SIZE, 3)  # ground truth | prediction
    for name in ("sample/samples.gif", "sample/samples.png", "frame_prediction/frame_prediction.gif",
                 "frame_prediction/frame_prediction.png"):
        assert (out / name).stat().st_size > 0


@pytest.mark.slow
def test_third_run_reuses_everything_quickly(demo_runs):
    proc = demo_runs["reused"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ALL_STAGES:
        assert f"stage '{stage}': reusing" in proc.stderr
    assert demo_runs["reused_seconds"] < demo_runs["completed_seconds"] / 2
    summary = json.loads((demo_runs["out"] / "summary.json").read_text())
    before = demo_runs["summary_after_completion"]
    for key in ("tokenizer", "nbp", "ntp", "speedup", "frame_prediction", "stages", "outputs"):
        assert summary[key] == before[key], key
    assert "speedup (NTP s / NBP s)" in proc.stdout


# ------------------------------------------------------------------ the parts, in-process (fast)


def test_object_tracking_finds_objects_and_measures_their_offset():
    from nbp.data.synthetic import COLOURS
    from lightning_modules.demo.evaluate import object_tracking

    real = torch.zeros(2, 3, 4, 32, 32, dtype=torch.uint8)  # B C T H W
    for t in range(4):
        real[0, :, t, 4:10, 2 + 2 * t:8 + 2 * t] = torch.from_numpy(COLOURS[0]).view(3, 1, 1)  # moves right
        real[1, :, t, 20:26, 20:26] = torch.from_numpy(COLOURS[4]).view(3, 1, 1)  # stands still
    assert object_tracking(real, real) == {"found": 1.0, "centre_error_px": 0.0}
    frozen = real[:, :, :1].expand_as(real)
    # 8 objects in all; the moving one is 0, 2, 4, 6 px away from its frozen copy
    assert object_tracking(frozen, real) == {"found": 1.0, "centre_error_px": pytest.approx(12 / 8)}
    lost = real.clone()
    lost[1] = 0  # the second clip's object vanished
    assert object_tracking(lost, real) == {"found": 0.5, "centre_error_px": 0.0}
    assert object_tracking(torch.zeros_like(real), real) == {"found": 0.0, "centre_error_px": None}


def _two_squares(frames: int = 6) -> torch.Tensor:
    """uint8 (C, T, H, W): a still red and a still green 6x6 square, a TwoSquares clip."""
    from nbp.data.synthetic import COLOURS

    clip = torch.zeros(3, frames, 32, 32, dtype=torch.uint8)
    clip[:, :, 2:8, 2:8] = torch.from_numpy(COLOURS[0]).view(3, 1, 1, 1)
    clip[:, :, 20:26, 20:26] = torch.from_numpy(COLOURS[1]).view(3, 1, 1, 1)
    return clip


def test_sample_checks_see_colour_changes_and_extra_objects():
    from nbp.data.synthetic import COLOURS
    from lightning_modules.demo.evaluate import colours_right, object_count_hits, objects_right

    right = _two_squares()
    recoloured = right.clone()  # green turns magenta from frame 3: right count, wrong colours
    recoloured[:, 3:, 20:26, 20:26] = torch.from_numpy(COLOURS[4]).view(3, 1, 1, 1)
    doubled = right.clone()  # a second red square in frames 0 and 1: right colours, wrong count there
    doubled[:, :2, 2:8, 20:26] = torch.from_numpy(COLOURS[0]).view(3, 1, 1, 1)
    videos = torch.stack([right, recoloured, doubled])
    assert colours_right(videos, [2, 2, 2]) == pytest.approx(2 / 3)
    hits = object_count_hits(videos, [2, 2, 2])
    assert hits.tolist() == [True] * 12 + [False, False] + [True] * 4
    assert objects_right(videos, [2, 2, 2]) == pytest.approx(16 / 18)
    assert objects_right(videos, [1, 1, 1]) == 0.0 and colours_right(videos, [3, 3, 3]) == 0.0


def test_shape_and_all_three_checks_on_rendered_clips():
    from lightning_modules.demo.evaluate import samples_right, shape_hits, shapes_right
    from nbp.data.synthetic import COLOURS, class_colours, is_circle, num_objects, render_video, video_rng

    for size in (40, 56):
        classes = list(range(len(CLASS_NAMES)))
        videos = torch.stack([torch.from_numpy(render_video(c, 17, size, video_rng(2, "test", c, 0))).permute(3, 0, 1, 2)
                              for c in classes])
        objects, squares = [num_objects(c) for c in classes], [not is_circle(c) for c in classes]
        assert shapes_right(videos, squares) == 1.0 and samples_right(videos, objects, squares) == 1.0
        # the same clips with the shapes swapped: every clip is the other shape
        assert not shape_hits(videos, [not square for square in squares]).any()
        wrong = videos.clone()
        wrong[3] = 0  # OneCircle drawn empty: no shape to see, no object, no colour
        recoloured = wrong[0].clone()  # OneSquare's red square drawn blue: its shape and count stay right
        red = (recoloured == torch.from_numpy(COLOURS[0]).view(3, 1, 1, 1)).all(0)
        recoloured[:, red] = torch.from_numpy(COLOURS[2]).view(3, 1).expand(3, int(red.sum()))
        wrong[0] = recoloured
        assert shape_hits(wrong, squares).tolist() == [True, True, True, False, True, True]
        assert samples_right(wrong, objects, squares) == pytest.approx(4 / 6)
        assert class_colours(0) == [0]


def test_counts_right_goes_by_the_count_of_most_frames():
    from nbp.data.synthetic import COLOURS
    from lightning_modules.demo.evaluate import counts_right

    right = _two_squares()
    flicker = right.clone()  # a third object in 2 of 6 frames: most frames still show two
    flicker[:, :2, 2:8, 20:26] = torch.from_numpy(COLOURS[0]).view(3, 1, 1, 1)
    lost = right.clone()  # the green square gone from frame 2 on: most frames show one
    lost[:, 2:] = 0
    lost[:, 2:, 4:10, 4:10] = torch.from_numpy(COLOURS[0]).view(3, 1, 1, 1)
    tie = right.clone()  # 3 frames of two, 3 of one: a tie goes to the smaller count
    tie[:, 3:] = 0
    tie[:, 3:, 4:10, 4:10] = torch.from_numpy(COLOURS[0]).view(3, 1, 1, 1)
    videos = torch.stack([right, flicker, lost, tie])
    assert counts_right(videos, [2, 2, 2, 2]) == pytest.approx(2 / 4)
    assert counts_right(videos[2:], [1, 1]) == 1.0


class _LosslessCodec:
    """A tokenizer whose ids are the pixel levels themselves: reconstructions equal the input."""

    vocab_size = 256

    def encode(self, video: torch.Tensor) -> torch.Tensor:  # [-1, 1] -> ids 0..255
        return ((video + 1) * 127.5).round().long()

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        return ids.float() / 127.5 - 1


def test_tokenizer_quality_counts_objects_of_the_reconstructions():
    from lightning_modules.demo.evaluate import tokenizer_quality

    clip = _two_squares()
    scores = tokenizer_quality(_LosslessCodec(), [clip] * 3, batch_size=2, objects=[2, 2, 1])
    assert scores["objects_right"] == pytest.approx(2 / 3)  # the third clip claims one object
    assert scores["codes_used"] == 2  # pure colours on black: only levels 0 and 255
    assert "objects_right" not in tokenizer_quality(_LosslessCodec(), [clip], batch_size=2)


def test_stage_runner_reuses_done_stages_and_clears_unfinished(tmp_path, capsys):
    from lightning_modules.demo.runner import StageRunner

    calls = []

    def stage(folder: Path) -> dict:
        calls.append(folder.name)
        (folder / "file.txt").write_text("complete")
        return {"value": len(calls)}

    runner = StageRunner(tmp_path)
    assert runner.run("a", stage) == {"value": 1}
    # An interrupted stage: a folder with a partial file but no done-marker.
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "partial.bin").write_bytes(b"half")
    again = StageRunner(tmp_path)
    assert again.run("a", stage) == {"value": 1}  # reused, not rerun
    assert again.run("b", stage) == {"value": 2}
    assert calls == ["a", "b"]
    assert not (tmp_path / "b" / "partial.bin").exists()
    err = capsys.readouterr().err
    assert "stage 'a': reusing" in err and "stage 'b': clearing the unfinished attempt" in err
    assert again.records["a"].reused and not again.records["b"].reused


def test_stage_that_raises_leaves_no_marker(tmp_path):
    from lightning_modules.demo.runner import StageRunner

    def broken(folder: Path) -> dict:
        (folder / "partial.bin").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        StageRunner(tmp_path).run("a", broken)
    assert not (tmp_path / "a" / "done.json").exists()


def test_budget_and_arguments_are_validated():
    from lightning_modules.demo.cli import choose_threads, main, resolve_device
    from lightning_modules.demo.runner import Budget
    from nbp.errors import UserError

    budget = Budget(10)
    assert budget.tokenizer_seconds + 2 * budget.model_seconds + budget.frames_seconds < budget.total_seconds
    for bad in (0, -1):
        with pytest.raises(UserError, match="--minutes"):
            Budget(bad)
    with pytest.raises(UserError, match="--device"):
        resolve_device("tpu")
    with pytest.raises(UserError, match="--threads"):
        choose_threads(-2)
    assert choose_threads(3) == 3
    with pytest.raises(UserError, match="--minutes"):
        main(["--minutes", "0", "--out", "unused"])


def test_time_budget_schedule_warms_up_then_decays():
    from lightning_modules.demo.train import TimeBudgetSchedule, max_time_string

    schedule = TimeBudgetSchedule(100.0, warmup_fraction=0.1, final_ratio=0.05)
    factors = [schedule.factor(t) for t in (0.0, 5.0, 10.0, 55.0, 100.0, 200.0)]
    assert factors[0] < factors[1] < factors[2] == pytest.approx(1.0)
    assert factors[3] == pytest.approx(0.05 + 0.95 * 0.5)
    assert factors[4] == pytest.approx(0.05) and factors[5] == pytest.approx(0.05)
    assert max_time_string(3725.4) == "00:01:02:05" and max_time_string(0.2) == "00:00:00:01"


def test_mosaic_places_clips_on_a_grid():
    import torch

    from lightning_modules.demo.evaluate import GAP_GREY, mosaic

    clips = torch.stack([torch.full((3, 2, 4, 4), 10 * (i + 1), dtype=torch.uint8) for i in range(5)])
    grid = mosaic(clips, columns=2, gap=1)
    assert grid.shape == (3, 2, 3 * 4 + 2, 2 * 4 + 1)
    assert grid[0, 0, 0, 0] == 10 and grid[0, 0, 0, 5] == 20 and grid[0, 0, 10, 0] == 50
    assert grid[0, 0, 4, 0] == GAP_GREY and grid[0, 0, 10, 5] == GAP_GREY  # gap row; the empty last cell


@pytest.mark.slow
def test_readme_python_example_runs_on_the_demo_outputs(demo_runs, tmp_path, monkeypatch):
    # The README's example names the demo's default output folder, runs/demo, relative to where it runs.
    from tests.test_readme import README, code_blocks

    (example,) = code_blocks(README.read_text(), ("python",))
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "demo").symlink_to(demo_runs["out"], target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)
    video = scope["video"]
    from lightning_modules.demo.settings import SIZE

    assert video.dtype == torch.uint8 and tuple(video.shape) == (2, 3, 17, SIZE, SIZE)
    written = tmp_path / "runs" / "two_samples.mp4"
    import decord

    assert len(decord.VideoReader(str(written))) == 17


@pytest.mark.slow
def test_long_option_adds_window_models_and_65_frame_samples(demo_runs, tmp_path):
    from lightning_modules.demo.settings import SIZE

    import shutil

    import decord

    out = tmp_path / "run"
    shutil.copytree(demo_runs["out"], out)
    proc = subprocess.run(demo_command(out) + ["--long", "true"], capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ALL_STAGES:
        assert f"stage '{stage}': reusing" in proc.stderr
    meta = json.loads((out / "long_tokens" / "train" / "meta.json").read_text())
    assert meta["frames"] == 65 and meta["grid"] == [17, SIZE // 8, SIZE // 8]
    model = torch.load(out / "long_nbp" / "window" / "checkpoints" / "model.pt", weights_only=True)
    assert model["config"]["window"] == 5 and model["config"]["grid"] == [5, SIZE // 8, SIZE // 8]
    for name in CLASS_NAMES:
        reader = decord.VideoReader(str(out / "long_sample" / "videos" / f"{name}.mp4"))
        assert len(reader) == 65 and reader[0].shape == (SIZE, SIZE, 3)
    long = json.loads((out / "summary.json").read_text())["long"]
    assert long["window"] == 5 and long["clip_frames"] == 65
    for key in ("plain_17", "window_17", "window_33", "window_65"):
        scores = long["samples"][key].get("all", long["samples"][key])
        assert 0.0 <= scores["objects_right"] <= 1.0 and 0.0 <= scores["colours_right"] <= 1.0
    assert long["samples"]["window_65"]["beyond_first_window"]["frames"] == 65 - 17
    assert set(long["frame_prediction"]["segments"]) == {"5-16", "17-32", "33-64"}
    assert "window model, 65 frames" in proc.stdout


def test_long_demo_judges_see_real_motion_as_smooth_and_a_teleport_as_a_jump():
    from lightning_modules.demo.long import motion
    from nbp.data.synthetic import render_video

    real = np.stack([render_video(c, 65, 32, np.random.default_rng(c)) for c in range(6)])
    videos = torch.from_numpy(real).permute(0, 4, 1, 2, 3)
    smooth = motion(videos)
    # synthetic objects move 1..3 px per frame per axis at 64 px: 0.5..1.5 px at 32 px; a centre jumps
    # only where one object hides part of another
    assert smooth["jumps"] < 0.01 and 0.5 <= smooth["mean_move_px"] <= 1.5 * math.sqrt(2)
    teleported = videos.clone()
    # every other frame of one video mirrored: its objects jump back and forth
    teleported[0, :, 1::2] = torch.flip(teleported[0, :, 1::2], dims=[-1, -2])
    assert motion(teleported)["jumps"] > 0.02
