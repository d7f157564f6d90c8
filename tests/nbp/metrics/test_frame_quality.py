import math

import numpy as np
import pytest
import torch

from nbp.metrics.frame_quality import FrameQuality, frame_psnr


def test_psnr_matches_the_definition():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 256, (2, 3, 4, 8, 8), generator=g, dtype=torch.uint8)
    pred = (target.int() + torch.randint(-20, 21, target.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    p, t = pred.numpy().astype(np.float64) / 255, target.numpy().astype(np.float64) / 255
    expected = [[10 * math.log10(1 / np.mean((p[b, :, f] - t[b, :, f]) ** 2)) for f in range(4)] for b in range(2)]
    np.testing.assert_allclose(frame_psnr(pred.double() / 255, target.double() / 255).numpy(), expected, rtol=1e-10)
    metric = FrameQuality()
    metric.update(pred[:1], target[:1])
    metric.update(pred[1:], target[1:])
    scores = metric.compute()
    assert scores["frames"] == 8 and scores["psnr"] == pytest.approx(np.mean(expected), rel=1e-10)
    assert 0 < scores["ssim"] < 1


def test_identical_videos_have_ssim_one_and_a_large_psnr():
    video = torch.rand(1, 3, 2, 16, 16)
    metric = FrameQuality()
    metric.update(video, video.clone())
    scores = metric.compute()
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-5) and scores["psnr"] >= 99
    with pytest.raises(ValueError, match="must be equal"):
        metric.update(video, video[:, :, :1])


def test_one_ssim_for_every_caller_and_tiny_frames():
    from lightning_modules import tokenizer_module
    from nbp.commands import eval_recon
    from nbp.metrics.frame_quality import frame_ssim

    assert eval_recon.frame_ssim is frame_ssim and tokenizer_module.frame_ssim is frame_ssim
    g = torch.Generator().manual_seed(0)
    video = torch.rand(2, 3, 3, 6, 6, generator=g)  # frames smaller than the 11-pixel window
    assert torch.allclose(frame_ssim(video, video.clone()), torch.ones(2, 3, dtype=torch.float64), atol=1e-5)
    noisy = (video + 0.2 * torch.randn(video.shape, generator=g)).clamp(0, 1)
    assert (frame_ssim(noisy, video) < 0.95).all()
