#!/usr/bin/env python
"""Two-process DDP vs one process on CPU (gloo): throughput of the synthetic transformer config.

Both runs train configs/nbp/synthetic.yaml (tiny preset, 5x8x8 grid, rows of 8) on a random token cache
with the same global batch; one as a single process, one as two torchrun ranks with half the batch
each. Prints one JSON object: samples/s and tokens/s of each run (steady state, measured by the
ThroughputMonitor callback) and their ratio.

    python scripts/bench_ddp_cpu.py --steps 30 --global-batch 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_random_cache(root: Path, n: int, grid=(5, 8, 8), vocab=1000, classes=6) -> Path:
    from nbp.token_cache import CacheMeta, TokenCacheWriter

    rng = np.random.default_rng(0)
    meta = CacheMeta(tokenizer_sha256="0" * 64, tokenizer_config={}, vocab_size=vocab, grid=grid, frames=17, fps=8,
                     resolution=(32, 32), dataset={"kind": "random"}, shard_size=256, num_source_items=n,
                     num_classes=classes)
    writer = TokenCacheWriter(root, meta)
    for k in writer.pending_shards():
        r = writer.shard_range(k)
        writer.write_shard(k, rng.integers(0, vocab, size=(len(r), *grid)), [i % classes for i in r],
                           [f"random{i}" for i in r])
    writer.finalize()
    return root


def run(workdir: Path, cache: Path, procs: int, steps: int, global_batch: int) -> dict:
    summary = workdir / f"throughput_{procs}proc.json"
    args = [
        "--config", str(REPO / "configs/nbp/synthetic.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.devices", str(procs), "--trainer.max_steps", str(steps),
        "--trainer.strategy", "ddp" if procs > 1 else "auto",
        "--trainer.enable_progress_bar", "false", "--trainer.val_check_interval", str(10 * steps),
        "--trainer.default_root_dir", str(workdir / f"run{procs}"),
        "--data.init_args.train_cache", str(cache), "--data.init_args.val_cache", "null",
        "--data.init_args.batch_size", str(global_batch // procs),
        "--model.init_args.export_name", "null", "--checkpoint.every_n_train_steps", "0",
        "--throughput.summary_json", str(summary), "--throughput.skip_first_steps", "3",
    ]
    if procs == 1:
        cmd = [sys.executable, "-m", "nbp", "train", "fit", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
               "-m", "nbp", "train", "fit", *args]
    # One thread per process in both runs, so the ratio measures data parallelism, not threading.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"run with {procs} process(es) failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(summary.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--global-batch", type=int, default=16)
    args = parser.parse_args()
    if args.global_batch % 2:
        sys.exit("--global-batch must be even (it is split over 2 processes)")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cache = write_random_cache(workdir / "cache", n=max(256, 4 * args.global_batch))
        one = run(workdir, cache, 1, args.steps, args.global_batch)
        two = run(workdir, cache, 2, args.steps, args.global_batch)
    print(json.dumps({
        "config": "configs/nbp/synthetic.yaml (tiny, grid 5x8x8, block 1x1x8)",
        "global_batch": args.global_batch, "steps": args.steps, "cpu_count": os.cpu_count(),
        "threads_per_process": 1, "load_average_1min": os.getloadavg()[0],
        "one_process": one, "two_process_ddp": two,
        "samples_per_s_ratio_2_over_1": two["samples_per_s"] / one["samples_per_s"],
    }, indent=2))


if __name__ == "__main__":
    main()
