"""`nbp sample --stream` as a real process: mp4 files that grow while sampling, the same videos as without it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import decord
import numpy as np
import pytest
import torch
from PIL import Image

from nbp.config import NBPConfig
from nbp.model import NBPTransformer
from nbp.model_file import save_model_file
from tokenizer import TokenizerConfig, VideoTokenizer

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream_ckpt")
    torch.manual_seed(0)
    tokenizer = VideoTokenizer(TokenizerConfig.from_preset("synthetic", base_channels=8, norm_groups=4, num_res_blocks=1))
    tokenizer.save(folder / "tokenizer.pt")
    common = dict(vocab_size=tokenizer.vocab_size, condition="class", num_classes=6, n_layer=1, n_head=2, n_embd=32,
                  dropout=0.0)
    # 17x32x32 pixels -> 5x8x8 tokens, rows of 8
    rows = NBPConfig(grid=(5, 8, 8), block=(1, 1, 8), first_block="hybrid", **common)
    # 65 frames token by token: 1088 model calls, slow enough to be interrupted mid-stream
    slow = NBPConfig(grid=(17, 8, 8), block=(1, 1, 1), first_block="start_block", **common)
    return {"tokenizer": folder / "tokenizer.pt",
            "rows": save_model_file(NBPTransformer(rows), rows, folder / "rows.pt"),
            "slow": save_model_file(NBPTransformer(slow), slow, folder / "slow.pt")}


def nbp_process(*argv, cwd) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NBP_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "nbp", *map(str, argv)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def decoded(path) -> np.ndarray:
    reader = decord.VideoReader(str(path))
    return reader.get_batch(list(range(len(reader)))).asnumpy().astype(int)


def grid_rows(png, samples, frames, size=32, gap=2) -> list[np.ndarray]:
    """The lossless frames (T, H, W, 3) of each sample, cut out of samples.png (one row per sample)."""
    image = np.asarray(Image.open(png)).astype(int)
    return [np.stack([image[i * (size + gap):i * (size + gap) + size, t * (size + gap):t * (size + gap) + size]
                      for t in range(frames)]) for i in range(samples)]


def test_streamed_files_hold_the_videos_of_the_plain_sample(checkpoints, tmp_path):
    args = ["sample", "--model", checkpoints["rows"], "--tokenizer", checkpoints["tokenizer"], "--classes", "1", "4",
            "--num", "2", "--batch-size", "3", "--seed", "5", "--top-k", "50", "--device", "cpu"]
    plain = nbp_process(*args, "--out", "plain", cwd=tmp_path)
    streamed = nbp_process(*args, "--out", "streamed", "--stream", "true", cwd=tmp_path)
    for proc in (plain, streamed):
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    report = json.loads((tmp_path / "streamed" / "samples.json").read_text())
    names = report["files"][:4]
    assert names == json.loads((tmp_path / "plain" / "samples.json").read_text())["files"][:4]
    assert sorted(p.name for p in (tmp_path / "streamed").glob("*.mp4")) == sorted(names)  # no partial left
    timings = report["timings"]
    assert len(timings["time_to_first_frame_seconds"]) == timings["batches"] == 2
    assert all(0 < t < timings["seconds"] for t in timings["time_to_first_frame_seconds"])

    # The frames themselves (lossless PNG grids): the same up to float32 rounding of the decoder.
    truth = grid_rows(tmp_path / "plain" / "samples.png", 4, 17)
    again = grid_rows(tmp_path / "streamed" / "samples.png", 4, 17)
    for a, b in zip(truth, again):
        diff = np.abs(a - b)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    # The mp4s: each streamed file plays as 17 frames and is as close to its sample's lossless frames as
    # the plain file is (the streamed one is encoded without lookahead, so not bit for bit the same)...
    plain_mp4 = [decoded(tmp_path / "plain" / name) for name in names]
    for i, name in enumerate(names):
        frames = decoded(tmp_path / "streamed" / name)
        assert frames.shape == (17, 32, 32, 3)
        assert np.abs(frames - truth[i]).mean() < np.abs(plain_mp4[i] - truth[i]).mean() + 1.5
        # ...and much closer to the plain file of its own sample than to any other sample's
        to_own = np.abs(frames - plain_mp4[i]).mean()
        assert all(to_own < 0.5 * np.abs(frames - other).mean() for j, other in enumerate(plain_mp4) if j != i)


def test_ctrl_c_keeps_a_playable_partial_and_says_where(checkpoints, tmp_path):
    proc = nbp_process("sample", "--model", checkpoints["slow"], "--tokenizer", checkpoints["tokenizer"],
                       "--classes", "2", "--stream", "true", "--device", "cpu", "--out", "out", cwd=tmp_path)
    partial, final = tmp_path / "out" / "ThreeSquares_00.partial.mp4", tmp_path / "out" / "ThreeSquares_00.mp4"
    deadline = time.time() + 120

    def size() -> int:
        return partial.stat().st_size if partial.exists() else 0

    # interrupt as soon as frames have been flushed after the file's header: a fixed wait here let a
    # quiet, fast machine finish the whole stream first
    while size() == 0 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    header = size()
    while size() <= header and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the stream ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("sampling:")]
    assert proc.returncode == 130 and "Traceback" not in err
    assert lines[-1] == "nbp: interrupted"
    assert lines[-2].startswith("nbp: stopped while streaming") and str(Path("out") / partial.name) in lines[-2]
    assert not final.exists()
    frames = decoded(partial)
    assert 1 <= len(frames) < 65
    assert frames.shape[1:] == (32, 32, 3)
