"""`nbp sample` end to end: real checkpoint files in, real mp4/gif/png/json out."""

import json

import decord
import pytest
import torch

from nbp.cli import main
from nbp.config import NBPConfig
from nbp.files import sha256_file
from nbp.model import NBPTransformer
from nbp.model_file import save_model_file
from tokenizer import TokenizerConfig, VideoTokenizer

# 17x32x32 pixels -> 5x8x8 tokens with the synthetic tokenizer preset (1000 codes)
TINY_TOKENIZER = dict(base_channels=8, norm_groups=4, num_res_blocks=1)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    tokenizer = VideoTokenizer(TokenizerConfig.from_preset("synthetic", **TINY_TOKENIZER))
    tokenizer.save(folder / "tokenizer.pt")
    common = dict(vocab_size=tokenizer.vocab_size, grid=(5, 8, 8), block=(1, 1, 8), first_block="hybrid",
                  n_layer=1, n_head=2, n_embd=32, dropout=0.0)
    paths = {"tokenizer": folder / "tokenizer.pt"}
    for name, extra in {"class": dict(condition="class", num_classes=6),
                        "frames": dict(condition="frames", context_frames=2),
                        "window": dict(condition="class", num_classes=6, window=5),
                        "wrong_vocab": dict(condition="class", num_classes=6, vocab_size=512)}.items():
        config = NBPConfig(**{**common, **extra})
        paths[name] = save_model_file(NBPTransformer(config), config, folder / f"{name}.pt")
    return paths


def frames_of(path):
    reader = decord.VideoReader(str(path))
    return len(reader), reader[0].shape


def test_class_conditional_samples_named_by_class(checkpoints, tmp_path):
    out = tmp_path / "samples"
    code = main(["sample", "--model", str(checkpoints["class"]), "--tokenizer", str(checkpoints["tokenizer"]),
                 "--class-names", "OneSquare", "TwoCircles", "--num", "2", "--batch-size", "3",
                 "--top-k", "50", "--top-p", "0.9", "--cfg", "1.5", "--seed", "3", "--out", str(out)])
    assert code == 0
    names = sorted(p.name for p in out.glob("*.mp4"))
    assert names == ["OneSquare_00.mp4", "OneSquare_01.mp4", "TwoCircles_00.mp4", "TwoCircles_01.mp4"]
    assert frames_of(out / "TwoCircles_01.mp4") == (17, (32, 32, 3))
    assert (out / "samples.png").stat().st_size > 0 and (out / "samples.gif").stat().st_size > 0
    report = json.loads((out / "samples.json").read_text())
    assert report["checksums"]["model_sha256"] == sha256_file(checkpoints["class"])
    assert report["checksums"]["tokenizer_sha256"] == sha256_file(checkpoints["tokenizer"])
    timings = report["timings"]
    assert timings["samples"] == 4 and timings["batches"] == 2
    assert timings["steps_per_batch"] == 8 + 5 * 8 * 8 // 8 - 1 and timings["model_calls"] == 2 * timings["steps_per_batch"]
    assert timings["sampling_seconds"] > 0 and timings["frames_per_second"] > 0
    assert report["settings"]["controls"]["cfg_scale"] == 1.5 and report["settings"]["seed"] == 3


def test_same_seed_same_videos(checkpoints, tmp_path):
    args = ["sample", "--model", str(checkpoints["class"]), "--tokenizer", str(checkpoints["tokenizer"]),
            "--classes", "4", "--seed", "9"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    # The PNG grid holds every frame losslessly; the mp4s are not compared byte for byte because
    # libx264 does not always make the same bitstream from the same frames (seen with PyAV 18).
    png_a, png_b = (tmp_path / "a" / "samples.png").read_bytes(), (tmp_path / "b" / "samples.png").read_bytes()
    assert png_a == png_b
    assert frames_of(tmp_path / "a" / "TwoCircles_00.mp4") == (17, (32, 32, 3))


def test_frame_prediction_from_a_context_video(checkpoints, synthetic_root, tmp_path):
    context = sorted(synthetic_root.glob("*/*.mp4"))
    out = tmp_path / "pred"
    code = main(["sample", "--model", str(checkpoints["frames"]), "--tokenizer", str(checkpoints["tokenizer"]),
                 "--context", str(context[0]), "--out", str(out)])
    assert code == 0
    [video] = out.glob("*.mp4")
    assert video.name.startswith(context[0].stem) and frames_of(video) == (17, (32, 32, 3))


def test_incompatible_tokenizer_is_one_line_exit_2(checkpoints, tmp_path, capsys):
    code = main(["sample", "--model", str(checkpoints["wrong_vocab"]), "--tokenizer", str(checkpoints["tokenizer"]),
                 "--out", str(tmp_path / "x")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "vocabulary 1000" in lines[0] and "512" in lines[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("extra,message", [
    (["--class-names", "Hexagon"], "unknown class name 'Hexagon'"),
    (["--classes", "6"], "out of range"),
    (["--context", "nowhere.mp4"], "class-conditional"),
    (["--cfg", "-1"], "cfg_scale"),
    (["--dtype", "int4"], "--dtype 'int4' is invalid; valid: float32, bfloat16, float16"),
])
def test_bad_arguments_are_one_line_errors(checkpoints, tmp_path, capsys, extra, message):
    code = main(["sample", "--model", str(checkpoints["class"]), "--tokenizer", str(checkpoints["tokenizer"]),
                 "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]


def test_missing_checkpoint_names_the_path(checkpoints, tmp_path, capsys):
    code = main(["sample", "--model", str(tmp_path / "none.pt"), "--tokenizer", str(checkpoints["tokenizer"]),
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "none.pt" in capsys.readouterr().err


def test_bfloat16_sampling_with_a_smaller_last_batch(checkpoints, tmp_path):
    out = tmp_path / "bf16"
    code = main(["sample", "--model", str(checkpoints["class"]), "--tokenizer", str(checkpoints["tokenizer"]),
                 "--classes", "1", "2", "3", "--batch-size", "2", "--dtype", "bfloat16", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "samples.json").read_text())
    assert report["settings"]["dtype"] == "bfloat16" and report["timings"]["batches"] == 2
    videos = sorted(out.glob("*.mp4"))
    assert len(videos) == 3 and all(frames_of(v) == (17, (32, 32, 3)) for v in videos)


def test_frames_gives_videos_of_any_length_and_the_models_own_length_the_default_videos(checkpoints, tmp_path):
    args = ["sample", "--model", str(checkpoints["window"]), "--tokenizer", str(checkpoints["tokenizer"]),
            "--classes", "2", "--seed", "4"]
    assert main(args + ["--frames", "33", "--out", str(tmp_path / "long")]) == 0
    assert frames_of(tmp_path / "long" / "ThreeSquares_00.mp4") == (33, (32, 32, 3))
    timings = json.loads((tmp_path / "long" / "samples.json").read_text())["timings"]
    # 5 latent frames as usual (8 tokens one by one, then 39 rows), then 4 more: a re-prefill that
    # gives the first row, and 7 more rows each
    assert timings["model_calls"] == 8 + 5 * 8 - 1 + 4 * 8
    assert main(args + ["--frames", "9", "--out", str(tmp_path / "short")]) == 0
    assert frames_of(tmp_path / "short" / "ThreeSquares_00.mp4") == (9, (32, 32, 3))
    assert main(args + ["--frames", "17", "--out", str(tmp_path / "own")]) == 0
    assert main(args + ["--out", str(tmp_path / "default")]) == 0
    assert (tmp_path / "own" / "samples.png").read_bytes() == (tmp_path / "default" / "samples.png").read_bytes()
