"""Losses checked against hand computations, and a few optimisation steps that reduce the loss."""

import pytest
import torch

from nbp.errors import UserError
from nbp.pixels import to_model
from tests.tokenizer.helpers import tiny_config
from tokenizer import VideoTokenizer
from tokenizer.discriminator import PatchDiscriminator3d
from tokenizer.losses import (LossConfig, adaptive_weight, anchor_loss, generator_adversarial_loss,
                              hinge_discriminator_loss, patch_means, reconstruction_losses)
from tokenizer.metrics import codebook_stats, video_psnr


def test_hinge_and_generator_losses_by_hand():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - x) = 0, 0.5, 2
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + x) = 0, 1, 2
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx(0.5 * (2.5 / 3 + 3 / 3))
    assert generator_adversarial_loss(fake).item() == pytest.approx(1 / 3)


def test_reconstruction_losses_by_hand():
    a, b = torch.zeros(1, 3, 1, 2, 2), torch.full((1, 3, 1, 2, 2), 0.5)
    l1, l2 = reconstruction_losses(a, b)
    assert (l1.item(), l2.item()) == (0.5, 0.25)


def test_patch_means_follow_the_causal_token_grid():
    # Each latent frame's pixels: frame 0 alone, then frames 1-4, 5-8 (time factor 4); 4x4 squares.
    video = torch.randn(2, 3, 9, 8, 12)
    means = patch_means(video, time_factor=4, space_factor=4)
    assert means.shape == (2, 3, 3, 2, 3)
    frames = [range(0, 1), range(1, 5), range(5, 9)]
    for t, span in enumerate(frames):
        for h in range(2):
            for w in range(3):
                pixels = video[:, :, list(span), 4 * h:4 * h + 4, 4 * w:4 * w + 4]
                torch.testing.assert_close(means[:, :, t, h, w], pixels.mean(dim=(2, 3, 4)))
    assert patch_means(video[:, :, :1], 4, 4).shape == (2, 3, 1, 2, 3)  # a single image


def test_anchor_loss_is_zero_for_the_exact_readout_and_grows_with_error():
    video = torch.rand(1, 3, 5, 4, 4)
    exact = patch_means(video, 4, 2)
    assert anchor_loss(exact, video, 4, 2).item() == pytest.approx(0.0, abs=1e-12)
    assert anchor_loss(exact + 0.5, video, 4, 2).item() == pytest.approx(0.25)


def test_adaptive_weight_is_the_ratio_of_gradient_norms():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    rec = (w * torch.tensor([3.0, 4.0])).sum()  # grad (3, 4): norm 5
    adv = (w * torch.tensor([0.6, 0.8])).sum()  # grad (0.6, 0.8): norm 1
    assert adaptive_weight(rec, adv, w).item() == pytest.approx(5 / (1 + 1e-4))
    assert adaptive_weight(rec, adv, w, max_weight=2.0).item() == 2.0


def test_patch_discriminator_shapes():
    disc = PatchDiscriminator3d(channels=8, layers=2)
    for frames in (1, 17):
        logits = disc(torch.randn(2, 3, frames, 32, 32))
        assert logits.shape[:2] == (2, 1) and logits.shape[2] >= 1


def test_metrics_by_hand():
    pred, target = torch.zeros(2, 3, 1, 2, 2), torch.zeros(2, 3, 1, 2, 2)
    pred[1] = 0.1  # MSE 0.01 -> 20 dB
    assert video_psnr(pred, target)[1].item() == pytest.approx(20.0, abs=1e-4)
    stats = codebook_stats(torch.tensor([2, 2, 0, 0]))
    assert stats["code_usage"] == 0.5 and stats["perplexity"] == pytest.approx(2.0)


def test_loss_config_validation():
    with pytest.raises(UserError, match="perceptual_weights"):
        LossConfig(perceptual_weight=0.1)
    with pytest.raises(UserError, match="disc_weight=-1"):
        LossConfig(disc_weight=-1)
    with pytest.raises(UserError, match="anchor_weight=-0.5"):
        LossConfig(anchor_weight=-0.5)
    with pytest.raises(UserError, match="edge_weight=-2"):
        LossConfig(edge_weight=-2)


def test_edge_loss_weighs_the_pixels_along_a_rendered_objects_outline():
    from nbp.data.synthetic import render_video, video_rng
    from tokenizer.losses import edge_loss, edge_map

    for size in (32, 56):
        video = torch.from_numpy(render_video(0, 3, size, video_rng(1, "test", 0, 0))).permute(3, 0, 1, 2)[None]
        target = video.float() / 127.5 - 1  # [-1, 1]
        edges = edge_map(target)[0, 0]
        inside = (video[0] > 0).any(0)  # T H W: the square's pixels
        # the band: the pixels on both sides of the outline (4-neighbours), and nothing else
        cross = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float32).view(1, 1, 1, 3, 3)
        grown = torch.nn.functional.conv3d(inside[None, None].float(), cross, padding=(0, 1, 1))[0, 0]
        near = grown > 0  # the object and the pixels next to it
        interior = grown == 5  # all four neighbours are the object's too
        assert edges[~near].eq(0).all() and edges[interior].eq(0).all()
        assert edges[near & ~interior].eq(1).all()  # a pure colour next to black: full weight
        # an error on the outline counts, the same error on the background far away does not
        moved = target.clone()
        moved[:, :, :, 0, 0] = 1.0  # a corner pixel of the frame, far from the object
        assert edge_loss(moved, target).item() == 0.0
        blurred = target.clone()
        blurred[:, :, inside & ~interior] = 0.0  # the outline half-way to black
        expected = (edges * (blurred - target).pow(2)).mean()
        assert edge_loss(blurred, target).item() == pytest.approx(expected.item()) and expected > 0


def test_a_few_steps_reduce_the_loss():
    from nbp.data.synthetic import SyntheticVideoDataset

    data = SyntheticVideoDataset(2, frames=9, size=16, seed=0, split="train")
    video = to_model(torch.stack([data[i]["video"] for i in range(4)]))
    tok = VideoTokenizer(tiny_config())
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        out = tok(video)
        l1, l2 = reconstruction_losses(out.video, video)
        loss = l1 + l2 + out.quantized.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
