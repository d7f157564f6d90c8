"""The one-shot device check: its CPU rehearsal runs for real, its CUDA plan parses and fits the budget."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nbp.bench import gpu_check
from nbp.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what happens without a GPU")
def test_script_without_a_gpu_says_so_in_one_line_and_exits_0(tmp_path):
    done = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1 and "no CUDA device" in done.stdout
    assert not (tmp_path / "out.json").exists()


def test_cuda_plan_parses_with_the_real_parsers_and_fits_eight_minutes():
    parts = gpu_check.plan("cuda")
    assert sum(p.limit_s for p in parts) <= 8 * 60
    assert gpu_check.build_parser("x").parse_args([]).budget_s < 8 * 60
    names = [p.name for p in parts]
    assert names[0] == "gpu_tests" and len(set(names)) == len(names)
    sampling = [p for p in parts if p.argv[:3] == ["nbp", "bench", "sampling"]]
    assert {(p.argv[p.argv.index("--batch-size") + 1], p.argv[p.argv.index("--compile") + 1]) for p in sampling} == \
        {("1", "false"), ("1", "true"), ("32", "false"), ("32", "true")}
    for part in parts:
        if part.argv[0] != "nbp":
            continue
        module = importlib.import_module(COMMANDS[part.argv[1]][part.argv[2]])
        args = module.build_parser("x").parse_args(part.argv[3:])  # a bad flag raises SystemExit here
        assert args.device == "cuda"
        if part in sampling:
            assert args.preset == "base" and args.dtype == "bfloat16"


def test_bad_device_is_a_one_line_error(capsys):
    assert main(["bench", "gpu-check", "--device", "tpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device 'tpu'" in err[0]


@pytest.mark.slow
def test_cpu_rehearsal_runs_every_part_into_one_json(tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, "-m", "nbp", "bench", "gpu-check", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert {p.name for p in gpu_check.plan("cpu")} == set(report["parts"])
    assert all(part["status"] == "ok" for part in report["parts"].values()), report["parts"]
    sampling = report["parts"]["sampling_tiny_b1_eager"]["report"]
    assert sampling["nbp"]["model_calls"] == 95 and sampling["nbp"]["per_call"]["sampling_s"] > 0
    assert report["summary"]["sampling"]["sampling_tiny_b1_eager"]["nbp_frames_per_s"] > 0
    assert report["parts"]["tokenizer_synthetic"]["report"]
