"""The one-shot device check: every GPU test and the GPU benchmarks, into one JSON file.

    nbp bench gpu-check --out gpu_check.json      (what scripts/gpu_check.sh runs)

Each part runs as its own process (a fresh CUDA context, so its peak memory is its own),
with a time limit cut from one overall budget, and the JSON file is rewritten after
every part, so a part that hangs or a budget that runs out still leaves the rest.
Without a CUDA device it says so in one line and exits 0; `--device cpu` instead runs
the same plan scaled down to a CPU (what the test suite does).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field

import torch
from jsonargparse import ArgumentParser

from nbp.errors import UserError
from nbp.files import write_json_atomic


@dataclass
class Part:
    name: str
    argv: list[str]  # arguments after `python -m`
    limit_s: float
    json_out: bool = True  # the part prints one JSON object on stdout
    env: dict = field(default_factory=dict)


def sampling_part(name: str, preset: str, device: str, batch: int, compile: bool, limit_s: float, **extra) -> Part:
    argv = ["nbp", "bench", "sampling", "--preset", preset, "--device", device, "--batch-size", str(batch),
            "--compile", str(compile).lower(), "--no-cache", "false", "--decode", "false"]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", str(value).lower() if isinstance(value, bool) else str(value)]
    return Part(name, argv, limit_s)


def plan(device: str) -> list[Part]:
    """What to run, in order of importance. On CUDA the limits add up to under 8 minutes."""
    if device == "cuda":
        parts = [Part("gpu_tests", ["pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"], 90,
                      json_out=False)]
        for batch in (1, 32):
            for compile in (False, True):
                parts.append(sampling_part(f"sampling_base_bf16_b{batch}_{'compiled' if compile else 'eager'}",
                                           "base", "cuda", batch, compile, 70, dtype="bfloat16",
                                           split=batch == 1 and not compile))
        parts.append(Part("train_base_flex_vs_sdpa_1280_tokens",
                          ["nbp", "bench", "train", "--device", "cuda", "--preset", "base", "--backends=[flex,sdpa]",
                           "--grid=[5,16,16]", "--block=[1,1,16]", "--vocab-size", "64000",
                           "--batch-size", "8", "--steps", "5", "--warmup", "2", "--precision", "bf16",
                           "--on-the-fly", "false"], 60))
        parts.append(Part("tokenizer_ucf101_bf16", ["nbp", "bench", "tokenizer", "--device", "cuda", "--dtype", "bf16",
                                                    "--batch", "8"], 30))
        return parts
    # the same plan on a CPU, scaled down: proves the plumbing, measures nothing of interest
    return [
        sampling_part("sampling_tiny_b1_eager", "tiny", "cpu", 1, False, 120, vocab_size=512, top_k=100,
                      ntp=False, threads=1),
        Part("train_tiny_sdpa", ["nbp", "bench", "train", "--device", "cpu", "--backends=[sdpa]", "--steps", "1",
                                 "--warmup", "0", "--batch-size", "2", "--on-the-fly", "false", "--threads", "1"], 120),
        Part("tokenizer_synthetic", ["nbp", "bench", "tokenizer", "--device", "cpu", "--preset", "synthetic",
                                     "--size", "32", "--rounds", "1", "--warmup", "0"], 120),
    ]


def environment() -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "host": platform.node()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported())
    return env


def run_part(part: Part, limit_s: float) -> dict:
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", *part.argv], capture_output=True, text=True, timeout=limit_s,
                              env={**os.environ, **part.env})
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": round(time.perf_counter() - started, 1), "limit_s": round(limit_s)}
    result = {"status": "ok" if done.returncode == 0 else "failed", "returncode": done.returncode,
              "seconds": round(time.perf_counter() - started, 1)}
    if part.json_out and done.returncode == 0:
        try:
            result["report"] = json.loads(done.stdout)
        except json.JSONDecodeError:
            result["stdout_tail"] = done.stdout[-2000:]
    else:
        result["output_tail"] = (done.stdout + done.stderr)[-2000:]
    return result


def summary(results: dict) -> dict:
    """The headline numbers: frames/s NBP vs NTP per sampling run, and the peak memory of every part."""
    out, peaks = {}, {}
    for name, result in results.items():
        report = result.get("report") or {}
        if "nbp" in report:
            out[name] = {"nbp_frames_per_s": report["nbp"]["frames_per_s"],
                         "ntp_frames_per_s": report.get("ntp", {}).get("frames_per_s"),
                         "speedup": report.get("speedup")}
        for key in ("peak_memory_gib",):
            if key in report:
                peaks[name] = report[key]
    return {"sampling": out, "peak_memory_gib": peaks}


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, description="GPU tests and benchmarks in one go, into one JSON file.")
    parser.add_argument("--out", type=str, default="gpu_check.json")
    parser.add_argument("--device", type=str, default="cuda", help="cuda (the check) or cpu (a scaled-down rehearsal)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="overall time limit in seconds")
    return parser


def main(argv: list[str], prog: str = "nbp bench gpu-check") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.device not in ("cuda", "cpu"):
        raise UserError(f"--device {args.device!r} is invalid; valid: cuda, cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to check (run it where a GPU is available)")
        return 0
    started = time.perf_counter()
    report = {"environment": environment(), "device": args.device, "budget_s": args.budget_s, "parts": {}}
    for part in plan(args.device):
        left = args.budget_s - (time.perf_counter() - started)
        if left < 10:
            report["parts"][part.name] = {"status": "skipped", "reason": "overall budget spent"}
            continue
        print(f"gpu_check: {part.name} (limit {min(part.limit_s, left):.0f} s)", file=sys.stderr, flush=True)
        report["parts"][part.name] = run_part(part, min(part.limit_s, left))
        report["summary"] = summary(report["parts"])
        report["seconds"] = round(time.perf_counter() - started, 1)
        write_json_atomic(args.out, report)
    print(json.dumps({"out": args.out, "seconds": report.get("seconds"),
                      "status": {name: r["status"] for name, r in report["parts"].items()}}))
    return 0

