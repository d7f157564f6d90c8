"""`nbp convert official`, then `nbp sample` and `nbp eval ucf101 / k600` on the converted folder, unchanged."""

from __future__ import annotations

import json

import pytest
import torch

from nbp.cli import main
from nbp.files import sha256_file
from nbp.official.transformer import ucf101_class_text
from nbp.sampling import generate_tokens, load_model
from nbp.sampling_controls import SamplingControls
from tests.nbp.metrics.standins import save_scripted_pooling_detector
from tests.nbp.official.golden import DATA, load_golden, reference_tokenizer_state

UCF, K600 = DATA / "ucf_hybrid_tiny.ckpt", DATA / "k600_tiny.ckpt"


@pytest.fixture(scope="module")
def small_tokenizer(tmp_path_factory):
    """A released-format MAGVIT-v2 file, narrow so that 128x128 decoding stays cheap on a CPU."""
    path = tmp_path_factory.mktemp("released") / "magvit2_small.pt"
    torch.save({"model_state_dict": reference_tokenizer_state(seed=5)}, path)
    return path


@pytest.fixture(scope="module")
def ucf_like(tmp_path_factory):
    """The UCF-101 layout with the 101 real class names, one 17-frame 128x128 clip per class."""
    from nbp.files import write_bytes_atomic
    from nbp.video_io import write_mp4

    root = tmp_path_factory.mktemp("ucf101")
    names, _ = ucf101_class_text()
    gen = torch.Generator().manual_seed(0)
    train, test = [], []
    for label, name in enumerate(names):
        rel = f"{name}/v_{name}_g01_c01.mp4"
        base = torch.randint(0, 256, (3, 1, 16, 16), generator=gen, dtype=torch.uint8)
        clip = base.repeat_interleave(8, 2).repeat_interleave(8, 3).expand(3, 17, 128, 128).contiguous()
        write_mp4(root / rel, clip, fps=8)
        train.append(f"{rel} {label + 1}")
        test.append(rel)
    write_bytes_atomic(root / "classInd.txt", "".join(f"{i + 1} {n}\n" for i, n in enumerate(names)).encode())
    write_bytes_atomic(root / "trainlist01.txt", ("\n".join(train) + "\n").encode())
    write_bytes_atomic(root / "testlist01.txt", ("\n".join(test) + "\n").encode())
    return root


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    path = tmp_path_factory.mktemp("detector") / "pooling.pt"
    save_scripted_pooling_detector(path)
    return path


def _convert(tokenizer, transformer, out):
    assert main(["convert", "official", "--tokenizer", str(tokenizer), "--transformer", str(transformer),
                 "--out", str(out)]) == 0
    return out / "model.pt", out / "tokenizer.pt"


def _one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nbp: error:"), err
    for needle in needles:
        assert needle in err[0], err[0]


def test_convert_then_sample_by_class_name(small_tokenizer, tmp_path, capsys):
    model_path, tok_path = _convert(small_tokenizer, UCF, tmp_path / "ucf")
    report = json.loads((tmp_path / "ucf" / "convert.json").read_text())
    assert report["sources"]["transformer"]["sha256"] == sha256_file(UCF)
    assert report["sources"]["tokenizer"]["sha256"] == sha256_file(small_tokenizer)
    # the native file reproduces the reference's greedy tokens
    golden = load_golden("ucf_hybrid_tiny_golden.pt")
    grid, _ = generate_tokens(load_model(model_path), cond=list(golden["class_names"]), controls=SamplingControls(top_k=1))
    assert torch.equal(grid.flatten(1), golden["greedy_video_ids"])

    out = tmp_path / "samples"
    assert main(["sample", "--model", str(model_path), "--tokenizer", str(tok_path), "--class-names", "YoYo",
                 "--out", str(out), "--sampling", "released", "--seed", "1"]) == 0
    samples = json.loads((out / "samples.json").read_text())
    assert samples["settings"]["controls"]["top_k"] == 16000 and samples["settings"]["controls"]["top_p"] == 0.9
    assert (out / "YoYo_00.mp4").is_file()


def test_eval_ucf101_on_the_converted_folder(small_tokenizer, ucf_like, detector, tmp_path, capsys):
    model_path, tok_path = _convert(small_tokenizer, UCF, tmp_path / "ucf")
    out = tmp_path / "ucf.json"
    assert main(["eval", "ucf101", "--model", str(model_path), "--tokenizer", str(tok_path), "--data", str(ucf_like),
                 "--num-samples", "2", "--batch-size", "2", "--shard-size", "2", "--detector", str(detector),
                 "--workers", "0", "--sampling", "released", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["counts"] == {"real": 2, "fake": 2} and report["fvd"] >= 0
    assert report["sampling"]["top_k"] == 16000 and report["sampling"]["top_p"] == 0.9
    shard = torch.load(tmp_path / "ucf_samples" / "shard_00000.pt", weights_only=True)
    assert shard["videos"].shape == (2, 3, 17, 128, 128)


def test_eval_k600_on_the_converted_folder(small_tokenizer, ucf_like, detector, tmp_path):
    model_path, tok_path = _convert(small_tokenizer, K600, tmp_path / "k600")
    out = tmp_path / "k600.json"
    assert main(["eval", "k600", "--model", str(model_path), "--tokenizer", str(tok_path), "--data", str(ucf_like),
                 "--kind", "ucf101", "--split", "test", "--num-samples", "2", "--batch-size", "2",
                 "--shard-size", "2", "--detector", str(detector), "--workers", "0", "--sampling", "released",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["context_frames"] == 5 and report["predicted_frames_scored"] == 2 * 12
    assert report["fvd"] >= 0 and 0 < report["psnr"] < 100


def test_bad_inputs_are_one_line(small_tokenizer, tmp_path, capsys):
    out = str(tmp_path / "out")
    _one_line_error(capsys, ["convert", "official", "--transformer", str(small_tokenizer), "--out", out],
                    "tokenizer file", "--tokenizer")
    _one_line_error(capsys, ["convert", "official", "--tokenizer", str(UCF), "--out", out], "transformer")
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(K600.read_bytes()[:10000])
    _one_line_error(capsys, ["convert", "official", "--transformer", str(cut), "--out", out], "cut.ckpt", "not a readable")
    _one_line_error(capsys, ["convert", "official", "--out", out], "--tokenizer")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(capsys, ["convert", "official", "--transformer", str(K600), "--out", str(blocker)], "is a file")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_hub_reference_offline_names_file_and_repo(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    ref = "hf://ShuhuaiRen/NBP-ucf-base/ucf_base_nbp16_hybrid.ckpt"
    _one_line_error(capsys, ["convert", "official", "--transformer", ref, "--out", str(tmp_path / "o")],
                    "ucf_base_nbp16_hybrid.ckpt", "ShuhuaiRen/NBP-ucf-base", "by hand")
    _one_line_error(capsys, ["convert", "official", "--transformer", "hf://only-owner", "--out", str(tmp_path / "o")],
                    "hf://OWNER/REPO/FILE")


def test_hub_reference_is_fetched_into_the_cache_and_converted(tmp_path, monkeypatch):
    """hf:// goes through huggingface_hub.hf_hub_download (a stand-in here: no network in tests)."""
    import sys
    import types

    calls = []

    def hf_hub_download(repo_id, filename):
        calls.append((repo_id, filename))
        return str(K600)

    hub = types.ModuleType("huggingface_hub")
    hub.hf_hub_download = hf_hub_download
    utils = types.ModuleType("huggingface_hub.utils")
    utils.logging = types.SimpleNamespace(set_verbosity_error=lambda: None)
    hub.utils = utils
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    monkeypatch.setitem(sys.modules, "huggingface_hub.utils", utils)
    out = tmp_path / "k600"
    assert main(["convert", "official", "--transformer", "hf://ShuhuaiRen/NBP-k600-base/k600_base_nbp16.ckpt",
                 "--out", str(out)]) == 0
    assert calls == [("ShuhuaiRen/NBP-k600-base", "k600_base_nbp16.ckpt")]
    report = json.loads((out / "convert.json").read_text())
    assert report["sources"]["transformer"]["sha256"] == sha256_file(K600)
    assert load_model(out / "model.pt").config.first_block == "context"
