import pytest
import torch

from nbp.bench.train import build_parser, main, measure_backend, threads_vs_processes
from nbp.errors import UserError


SMALL = dict(preset="tiny", device="cpu", grid=[2, 4, 4], block=[1, 1, 4], first_block="hybrid",
             vocab_size=64, batch_size=2, steps=1, warmup=0, precision="fp32", grad_checkpointing=False,
             threads=1, backend="sdpa")


def test_one_backend_measurement_reports_throughput_and_memory():
    spec = SMALL
    result = measure_backend(spec)
    assert result["tokens_per_s"] > 0 and result["step_ms"] > 0
    assert result["peak_memory_mb"] > 0 and result["peak_memory_kind"] == "process_peak_rss"
    assert result["params_m"] > 0


def test_parser_defaults_cover_every_backend_and_the_cache_comparison():
    args = build_parser("nbp bench train").parse_args([])
    assert args.backends == ["sdpa", "flex", "xformers"] and args.on_the_fly and args.preset == "tiny"


def test_model_size_overrides_replace_the_presets():
    tiny = measure_backend(SMALL)["params_m"]
    small = measure_backend({**SMALL, "n_layer": 1, "n_head": 2, "n_embd": 32})["params_m"]
    assert small < tiny / 4  # tiny is 4 layers x 128 wide


def test_threads_against_processes_times_both_in_real_processes():
    part = threads_vs_processes({**SMALL, "steps": 3, "warmup": 1, "n_layer": 1, "n_embd": 32}, 2)
    assert part["one_process"]["threads"] == 2 and part["one_process"]["tokens_per_s"] > 0
    runs = part["side_by_side"]["runs"]
    assert len(runs) == 2 and all(run["tokens_per_s"] > 0 for run in runs), runs
    assert part["side_by_side"]["total_tokens_per_s"] == pytest.approx(sum(run["tokens_per_s"] for run in runs), abs=0.2)
    assert part["total_speedup"] == pytest.approx(part["side_by_side"]["total_tokens_per_s"]
                                                  / part["one_process"]["tokens_per_s"], rel=0.01)


@pytest.mark.parametrize("argv, message", [(["--precision", "fp8"], "precision"),
                                           (["--steps", "0"], "steps"),
                                           (["--side-by-side", "1"], "side-by-side"),
                                           (["--device", "cuda"], "CUDA")])
def test_bad_settings_are_user_errors(argv, message):
    if argv[0] == "--device" and torch.cuda.is_available():
        pytest.skip("CUDA is available here, so --device cuda is valid")
    with pytest.raises(UserError, match=message):
        main(argv)
