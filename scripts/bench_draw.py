"""Time the block draw against the output head it follows, in one process.

    python3 scripts/bench_draw.py [--against main] [--threads 1]
    python3 scripts/bench_draw.py --against main --decode nbp --rounds 3   # whole decodes instead

A (16, 64000) float32 block of logits from the head F.linear(x (16, 128), W (64000, 128)),
drawn with top-k 16000, top-p 0.9, temperature 1. The calls are interleaved (head, draw with
buffers reused as a decoder does, draw with fresh buffers, then the draw of `--against`, a
git revision) so load on the machine hits them alike;
each figure is the best of the rounds. Prints one JSON line; "draw_over_head" is the target (<= 1).

--decode nbp|ntp times whole decodes of the `nbp bench sampling --preset tiny` model (rows of
16, or one token per call) instead, alternating this draw with the draw of `--against`: the
same model, the same tokens, only the draw differs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import nbp.sampler
from nbp.bench.sampling import ROW, bench_condition, make_model
from nbp.draw_buffers import DrawBuffers
from nbp.sampling_controls import SamplingControls, draw


def draw_at_revision(revision: str):
    """The `draw` of nbp/sampling_controls.py as it is at a git revision."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(["git", "show", f"{revision}:nbp/sampling_controls.py"], cwd=root,
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "sampling_controls_at_revision.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("sampling_controls_at_revision", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.draw


def best_seconds(fn, calls: int) -> float:
    """Best of `calls` single calls."""
    best = float("inf")
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def time_decodes(kind: str, old_draw, rounds: int) -> dict:
    """Seconds of whole decodes, alternating this draw and `old_draw` (which takes no buffers)."""
    model = make_model("tiny", ROW if kind == "nbp" else (1, 1, 1), "cpu", torch.float32)
    controls = SamplingControls(temperature=1.0, top_k=16000, top_p=0.9)
    cond = bench_condition(model.config, 1, "cpu")
    draws = {"draw": draw,
             "draw_against": lambda logits, controls, generator, buffers: old_draw(logits, controls, generator)}
    seconds = {name: [] for name in draws}
    nbp.sampler.sample_sequence(model, cond, 1, controls)  # warm-up: the cache and the buffers
    for _ in range(rounds):
        tokens = []
        for name, fn in draws.items():
            nbp.sampler.draw = fn
            seq, stats = nbp.sampler.sample_sequence(model, cond, 1, controls, torch.Generator().manual_seed(0))
            seconds[name].append(round(stats.seconds, 3))
            tokens.append(seq)
        assert torch.equal(*tokens), "the two draws picked different tokens"
    nbp.sampler.draw = draw
    ratios = [round(a / b, 3) for a, b in zip(seconds["draw"], seconds["draw_against"])]
    return {"decode": kind, "seconds": seconds, "draw_over_against": ratios}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="also time the draw of this git revision (e.g. main)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=64000)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--decode", choices=["nbp", "ntp"], help="time whole decodes (needs --against)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.decode:
        if not args.against:
            parser.error("--decode needs --against REVISION")
        print(json.dumps(time_decodes(args.decode, draw_at_revision(args.against), args.rounds)))
        return
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.rows, args.width, generator=generator)
    weight = torch.randn(args.vocab, args.width, generator=generator) * (2 / args.width ** 0.5)
    logits = F.linear(x, weight)  # about N(0, 4): the spread of a trained model's logits
    controls = SamplingControls(temperature=1.0, top_k=16000, top_p=0.9)
    buffers = DrawBuffers()  # reused by every call, as a decoder does
    contenders = {"head": lambda: F.linear(x, weight), "draw": lambda: draw(logits, controls, generator, buffers),
                  "draw_fresh_buffers": lambda: draw(logits, controls, generator)}
    if args.against:
        old_draw = draw_at_revision(args.against)
        contenders[f"draw_{args.against}"] = lambda: old_draw(logits, controls, generator)
    best = {name: float("inf") for name in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            best[name] = min(best[name], best_seconds(fn, 3))
    report = {name: round(seconds * 1e3, 3) for name, seconds in best.items()}
    report = {"ms": report, "draw_over_head": round(best["draw"] / best["head"], 3)}
    if args.against:
        report[f"draw_{args.against}_over_head"] = round(best[f"draw_{args.against}"] / best["head"], 3)
    print(json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())
