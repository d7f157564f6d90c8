import numpy as np
import pytest
import torch

from nbp.errors import UserError
from nbp.metrics.protocols import PRESETS, get_protocol


def _linear_resize_1d(x: np.ndarray, out: int, axis: int) -> np.ndarray:
    """Half-pixel linear resampling along one axis, written from the definition."""
    n = x.shape[axis]
    src = np.clip((np.arange(out) + 0.5) * n / out - 0.5, 0, n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = src - lo
    shape = [1] * x.ndim
    shape[axis] = out
    w = w.reshape(shape)
    return np.take(x, lo, axis=axis) * (1 - w) + np.take(x, hi, axis=axis) * w


def _bilinear(x: np.ndarray, h: int, w: int) -> np.ndarray:
    return _linear_resize_1d(_linear_resize_1d(x, h, axis=-2), w, axis=-1)


def _video(t=17, h=8, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (2, 3, t, h, w), generator=g, dtype=torch.uint8)


def test_presets_name_the_documented_settings():
    s, n, t = PRESETS["styleganv"], PRESETS["nbp"], PRESETS["tats"]
    assert (s.ddof, s.rescale, s.resize, s.quantize_uint8, s.detector_kind) == (0, True, True, True, "torchscript")
    assert (n.ddof, n.rescale, n.resize, n.quantize_uint8, n.detector_kind) == (1, False, False, False, "torchscript")
    assert (t.ddof, t.quantize_uint8, t.resize_mode, t.detector_kind) == (1, True, "squash", "state_dict")
    assert all(p.frames == 16 for p in PRESETS.values())
    assert (s.num_real, s.num_fake, n.num_fake) == (2048, 2048, 10000)


def test_nbp_short_side_resize_center_crop_and_range():
    video = _video(h=8, w=12)
    out = PRESETS["nbp"].preprocess(video)
    assert out.shape == (2, 3, 16, 224, 224) and out.dtype == torch.float32
    frames = video[:, :, :16].numpy().astype(np.float64) / 255
    resized = _bilinear(frames, 224, 336)  # shorter side 8 -> 224, 12 -> 336
    expected = (resized[..., :, 56:280] - 0.5) * 2  # centre crop 224 of 336
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-5)


def test_nbp_takes_the_first_16_frames_and_has_no_uint8_step():
    video = torch.zeros(1, 3, 17, 224, 224)
    video[:, :, 16] = 1.0  # the 17th frame must not be scored
    video[:, :, 3] = 0.5 + 0.3 / 255  # between two uint8 levels
    out = PRESETS["nbp"].preprocess(video)
    assert out.shape[2] == 16 and out.max() < 0.1
    assert out[0, 0, 3, 0, 0].item() == pytest.approx((0.5 + 0.3 / 255 - 0.5) * 2, abs=1e-6)
    assert out[0, 0, 0, 0, 0].item() == -1.0


def test_styleganv_quantizes_and_leaves_resize_to_the_detector():
    video = torch.full((1, 3, 16, 10, 14), 0.5)
    video[:, :, 1] = 1.0
    out = PRESETS["styleganv"].preprocess(video)
    assert out.shape == (1, 3, 16, 10, 14)
    assert out[0, 0, 0, 0, 0].item() == 128.0  # round(0.5 * 255) = 128 (uint8 step)
    assert out[0, 0, 1, 0, 0].item() == 255.0
    u8 = _video(t=16)
    assert torch.equal(PRESETS["styleganv"].preprocess(u8), u8.float())


def test_tats_squashes_to_224_after_uint8():
    video = _video(h=8, w=12, seed=1)
    out = PRESETS["tats"].preprocess(video.float() / 255 + 0.3 / 255)  # rounds back to the same uint8 video
    frames = video[:, :, :16].numpy().astype(np.float64)
    expected = 2 * _bilinear(frames, 224, 224) / 255 - 1  # no crop: aspect ratio squashed
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-5)
    assert PRESETS["tats"].preprocess(torch.full((1, 3, 16, 4, 4), 0.5))[0, 0, 0, 0, 0].item() == pytest.approx(
        2 * 128 / 255 - 1, abs=1e-6
    )


def test_k600_pre_resize_to_64_then_224():
    protocol = get_protocol("nbp", pre_resize=64)
    video = _video(t=16, h=128, w=128, seed=2)[:1]
    out = protocol.preprocess(video)
    frames = video.numpy().astype(np.float64) / 255
    # an exact 2x bilinear downsample averages pixel pairs: (2i + 0.5) sits between 2i and 2i + 1
    small = 0.25 * (frames[..., 0::2, 0::2] + frames[..., 1::2, 0::2] + frames[..., 0::2, 1::2] + frames[..., 1::2, 1::2])
    np.testing.assert_allclose(_bilinear(frames, 64, 64), small, atol=1e-12)
    np.testing.assert_allclose(out.numpy(), (_bilinear(small, 224, 224) - 0.5) * 2, atol=2e-5)


def test_bad_protocols_and_inputs_fail_clearly():
    with pytest.raises(UserError, match="unknown FVD protocol 'fid'; valid: styleganv, nbp, tats"):
        get_protocol("fid")
    with pytest.raises(UserError, match="ddof=2"):
        get_protocol("nbp", ddof=2)
    with pytest.raises(UserError, match="resize_mode"):
        get_protocol("nbp", resize_mode="detector")
    with pytest.raises(UserError, match="frames=8"):
        get_protocol("tats", frames=8)
    with pytest.raises(UserError, match="16 frames"):
        PRESETS["nbp"].preprocess(torch.zeros(1, 3, 12, 8, 8))
    with pytest.raises(UserError, match=r"\(B, 3, T, H, W\)"):
        PRESETS["nbp"].preprocess(torch.zeros(3, 16, 8, 8))
