#!/usr/bin/env python
"""How far this project's reading of the released formats is from the reference implementation's outputs.

Runs the fixtures of tests/data/official (the reference's own modules on small random-weight
models) through nbp.official and prints one JSON object: max abs errors of tokenizer latents
and decoded video, the share of equal ids, the max abs errors of the transformers' probe logits
and logsumexp, and whether greedy sampling gives the reference's tokens.

    python scripts/official_golden_errors.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbp.official.tokenizer import official_tokenizer_from_state  # noqa: E402
from nbp.official.transformer import load_official_transformer  # noqa: E402
from nbp.sampler import sample_sequence  # noqa: E402
from nbp.sampling_controls import SamplingControls  # noqa: E402
from tests.nbp.official.golden import DATA, load_golden, rule_weights  # noqa: E402


@torch.no_grad()
def tokenizer_errors() -> dict:
    golden = load_golden("tokenizer_golden.pt")
    tok = official_tokenizer_from_state(rule_weights(golden["manifest"]))
    video = golden["input_video"] * 2 - 1
    latents = tok.encoder(video)
    ids = tok.encode(video)
    decoded = (tok.decode_codes(tok.quantizer.ids_to_codes(golden["ids"])) + 1) / 2  # in the reference's [0, 1]
    return {"latents_max_abs": (latents - golden["latents"]).abs().max().item(),
            "ids_equal": f"{int((ids == golden['ids']).sum())}/{ids.numel()}",
            "decoded_max_abs_0_1": (decoded - golden["decoded_from_ids"]).abs().max().item()}


@torch.no_grad()
def transformer_errors(ckpt: str, golden_name: str) -> dict:
    model, golden = load_official_transformer(DATA / ckpt), load_golden(golden_name)
    config = model.config
    grid = golden["video_ids"].view(-1, *config.grid)
    if config.condition == "class":
        cond = torch.tensor([config.class_names.index(n) for n in golden["class_names"]])
        video, greedy_cond, want = config.layout.grid_to_seq(grid), cond, golden["greedy_video_ids"]
    else:
        video = config.layout.grid_to_seq(grid[:, config.context_frames:])
        cond = config.context_layout.grid_to_seq(grid[:, : config.context_frames])
        greedy_cond = config.context_layout.grid_to_seq(golden["context_ids"].view(-1, config.context_frames, *config.grid[1:]))
        want = golden["greedy_continuation"]
    probe = torch.tensor(golden["logits"]["probe_ids"])
    probe_err = lse_err = 0.0
    for row in range(video.shape[0]):
        logits = model.all_logits(video[row:row + 1], cond[row:row + 1])[0]
        probe_err = max(probe_err, (logits[:, probe] - golden["logits"]["probe_logits"][row]).abs().max().item())
        lse_err = max(lse_err, (logits.logsumexp(-1) - golden["logits"]["logsumexp"][row]).abs().max().item())
    seq, stats = sample_sequence(model, greedy_cond, controls=SamplingControls(top_k=1))
    got = config.layout.seq_to_grid(seq).flatten(1)
    return {"probe_logits_max_abs": probe_err, "logsumexp_max_abs": lse_err, "positions": int(video.shape[0]) * config.seq_len,
            "greedy_tokens_equal": f"{int((got == want).sum())}/{want.numel()}", "model_calls": stats.model_calls}


if __name__ == "__main__":
    print(json.dumps({"tokenizer": tokenizer_errors(),
                      "ucf101": transformer_errors("ucf_hybrid_tiny.ckpt", "ucf_hybrid_tiny_golden.pt"),
                      "k600": transformer_errors("k600_tiny.ckpt", "k600_tiny_golden.pt")}, indent=2))
