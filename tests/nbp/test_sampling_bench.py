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
