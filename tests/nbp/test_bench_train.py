import pytest
import torch

from nbp.bench.train import build_parser, main, measure_backend
from nbp.errors import UserError


def test_one_backend_measurement_reports_throughput_and_memory():
    spec = dict(preset="tiny", device="cpu", grid=[2, 4, 4], block=[1, 1, 4], first_block="hybrid",
                vocab_size=64, batch_size=2, steps=1, warmup=0, precision="fp32", grad_checkpointing=False,
                threads=1, backend="sdpa")
    result = measure_backend(spec)
    assert result["tokens_per_s"] > 0 and result["step_ms"] > 0
    assert result["peak_memory_mb"] > 0 and result["peak_memory_kind"] == "process_peak_rss"
    assert result["params_m"] > 0


def test_parser_defaults_cover_every_backend_and_the_cache_comparison():
    args = build_parser("nbp bench train").parse_args([])
    assert args.backends == ["sdpa", "flex", "xformers"] and args.on_the_fly and args.preset == "tiny"


@pytest.mark.parametrize("argv, message", [(["--precision", "fp8"], "precision"),
                                           (["--steps", "0"], "steps"),
                                           (["--device", "cuda"], "CUDA")])
def test_bad_settings_are_user_errors(argv, message):
    if argv[0] == "--device" and torch.cuda.is_available():
        pytest.skip("CUDA is available here, so --device cuda is valid")
    with pytest.raises(UserError, match=message):
        main(argv)
