"""`nbp bench rolling`: its JSON, and its rolling-cache alternative against the shipped re-prefill."""

import json

import torch

from nbp.bench.rolling import make_model, rolling_cache_frames
from nbp.cli import main
from nbp.rolling import iter_latent_frames
from nbp.sampling_controls import SamplingControls


def test_bench_reports_every_length_and_the_rolling_cache(capsys):
    assert main(["bench", "rolling", "--frames", "17", "33", "--vocab-size", "64", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    short, long = report["results"]
    assert (short["latent_frames"], long["latent_frames"]) == (5, 9)
    assert 0 < short["first_latent_frame_s"] <= short["seconds"]
    assert long["per_extra_latent_frame_s"] > 0 and long["rolling_cache_seconds"] > 0
    assert 0.0 <= report["rolling_cache_greedy_agreement"] <= 1.0


def test_the_rolling_cache_agrees_in_the_first_window_and_not_after():
    torch.manual_seed(0)
    model = make_model("tiny", 64, "cpu", torch.float32)
    torch.nn.init.normal_(model.pos_emb, std=1.0)  # positions that matter, as in a trained model
    cond = torch.tensor([3, 7])
    greedy = SamplingControls(temperature=0.0)
    exact = torch.stack(list(iter_latent_frames(model, cond, 9, controls=greedy)), 1)
    shifted = rolling_cache_frames(model, cond, 9, greedy, None)
    assert shifted.shape == exact.shape == (2, 9, 16, 16)
    assert torch.equal(shifted[:, :5], exact[:, :5])
    assert not torch.equal(shifted[:, 5:], exact[:, 5:])  # stale keys: not what the model was trained on
