"""`nbp bench sampling` argument checks (the measurement itself is run by hand: it is a benchmark, not a test)."""

import pytest
import torch

from nbp.bench.sampling import GRID, ROW, make_config
from nbp.cli import main


@pytest.mark.parametrize("extra,message", [
    (["--preset", "huge"], "--preset 'huge'"),
    (["--dtype", "int8"], "--dtype 'int8'"),
    (["--batch-size", "0"], "--batch-size 0"),
])
def test_bad_bench_arguments_are_one_line_errors(capsys, extra, message):
    assert main(["bench", "sampling", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_cuda_without_a_gpu_is_a_user_error(capsys):
    assert main(["bench", "sampling", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_benchmark_layout_is_the_papers_ucf101_setting():
    nbp, ntp = make_config("tiny", ROW), make_config("tiny", (1, 1, 1))
    assert GRID == (5, 16, 16) and nbp.num_tokens == 1280 and nbp.vocab_size == 64000
    assert nbp.decode_steps == 95 and ntp.decode_steps == 1280


@pytest.mark.parametrize("preset,calls,ntp_calls,seq_len", [
    ("official-ucf-base", 95, 1280, 1288), ("official-k600-3b", 48, 768, 1264)])
def test_official_presets_are_the_released_layouts(preset, calls, ntp_calls, seq_len):
    from nbp.official.transformer import config_from_args, read_checkpoint
    from tests.nbp.official.golden import DATA

    nbp, ntp = make_config(preset, ROW), make_config(preset, (1, 1, 1))
    assert (nbp.decode_steps, ntp.decode_steps, nbp.seq_len) == (calls, ntp_calls, seq_len)
    size = {"base": (24, 16, 1536), "3b": (32, 32, 3072)}[preset.rsplit("-", 1)[1]]
    assert (nbp.n_layer, nbp.n_head, nbp.n_embd) == size
    # the same layout the loader builds from a released file's hyperparameters
    args, gpt = read_checkpoint(DATA / ("ucf_hybrid_tiny.ckpt" if "ucf" in preset else "k600_tiny.ckpt"))
    loaded = config_from_args(args, gpt, "fixture")
    layout = ("first_block", "condition", "context_frames", "class_text_len", "hybrid_placeholders", "video_offset",
              "grid", "block", "vocab_size")
    assert {k: getattr(nbp, k) for k in layout} == {k: getattr(loaded, k) for k in layout}


def test_official_preset_runs_tiny_on_cpu(capsys):
    import json

    argv = ["bench", "sampling", "--preset", "official-k600-base", "--size", "tiny", "--ntp", "false",
            "--decode", "false", "--threads", "1"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nbp"]["model_calls"] == 48 and report["layout"]["tokens"] == 768
    assert report["nbp"]["first_block"] == "context" and report["cache"]["speedup"] > 0
    assert main(["bench", "sampling", "--preset", "tiny", "--size", "tiny"]) == 2


def test_bench_runs_and_splits_a_call_into_model_head_and_sampling(capsys):
    import json

    args = ["bench", "sampling", "--ntp", "false", "--no-cache", "false", "--decode", "false",
            "--vocab-size", "300", "--top-k", "50", "--threads", "1"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dtype"] == "float32" and report["nbp"]["model_calls"] == 95
    split = report["nbp"]["per_call"]
    assert split["tokens_per_call"] == 16
    assert all(split[k] > 0 for k in ("model_s", "head_s", "sampling_s"))
