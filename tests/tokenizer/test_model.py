"""Shapes, causality and the encode/decode contract of VideoTokenizer."""

import math

import pytest
import torch

from nbp.errors import UserError
from tests.tokenizer.helpers import tiny_config
from tokenizer import TokenizerConfig, VideoTokenizer


def random_video(b, t, h, w):
    return torch.rand(b, 3, t, h, w) * 2 - 1


@pytest.mark.parametrize("frames", [1, 5, 9, 17])
@pytest.mark.parametrize("size", [(16, 16), (8, 24)])
@pytest.mark.parametrize("per_frame_convs", [False, True])
def test_encode_decode_shapes(frames, size, per_frame_convs):
    tok = VideoTokenizer(tiny_config(per_frame_convs=per_frame_convs)).eval()
    h, w = size
    ids = tok.encode(random_video(2, frames, h, w))
    assert ids.dtype == torch.int64
    assert tuple(ids.shape) == (2, *tok.latent_shape(frames, h, w))
    assert tok.latent_shape(frames, h, w) == (1 + (frames - 1) // 4, h // 4, w // 4)
    assert 0 <= int(ids.min()) and int(ids.max()) < tok.vocab_size == 125
    video = tok.decode(ids)
    assert tuple(video.shape) == (2, 3, frames, h, w)
    assert video.min() >= -1 and video.max() <= 1


def test_spatial_8x_and_temporal_2x():
    tok = VideoTokenizer(tiny_config(channel_mults=(1, 1, 1, 2), spatial_downsample=8, temporal_downsample=2)).eval()
    ids = tok.encode(random_video(1, 9, 16, 32))
    assert tuple(ids.shape) == (1, 5, 2, 4)
    assert tuple(tok.decode(ids).shape) == (1, 3, 9, 16, 32)


def test_presets_latent_grids():
    for name in ("ucf101", "k600"):
        config = TokenizerConfig.from_preset(name)
        assert config.latent_shape(17, 128, 128) == (5, 16, 16) and config.vocab_size == 64_000
    synthetic = VideoTokenizer(TokenizerConfig.from_preset("synthetic"))
    assert synthetic.latent_shape(17, 32, 32) == (5, 8, 8) and synthetic.vocab_size == 1000


def test_patch_folding_keeps_shapes():
    tok = VideoTokenizer(tiny_config(patch_size=2)).eval()
    ids = tok.encode(random_video(1, 5, 8, 16))
    assert tuple(ids.shape) == (1, 2, 2, 4)
    assert tuple(tok.decode(ids).shape) == (1, 3, 5, 8, 16)


@torch.no_grad()
@pytest.mark.parametrize("tanh_output", [False, True])
def test_tanh_output_bounds_the_raw_reconstruction(tanh_output):
    tok = VideoTokenizer(tiny_config(tanh_output=tanh_output)).eval()
    tok.decoder.conv_out.conv.weight.mul_(50)  # a decoder far outside the pixel range
    raw = tok(random_video(1, 5, 16, 16)).video
    if tanh_output:
        assert raw.abs().max() <= 1
    else:
        assert raw.abs().max() > 1


def test_per_frame_convs_mix_time_only_in_resampling_and_the_decoder_input():
    tok = VideoTokenizer(tiny_config(per_frame_convs=True))
    time_extent = {name: module.kernel_size[0] for name, module in tok.named_modules()
                   if isinstance(module, torch.nn.Conv3d)}
    temporal = sorted(name for name, extent in time_extent.items() if extent > 1)
    downsampling = sorted(name for name, m in tok.named_modules() if isinstance(m, torch.nn.Conv3d) and m.stride[0] == 2)
    assert downsampling and temporal == sorted(downsampling + ["decoder.conv_in.conv"])
    full_3d = VideoTokenizer(tiny_config())
    assert sum(p.numel() for p in tok.parameters()) < sum(p.numel() for p in full_3d.parameters())


@torch.no_grad()
@pytest.mark.parametrize("per_frame_convs", [False, True])
def test_encoder_is_causal_in_time(per_frame_convs):
    tok = VideoTokenizer(tiny_config(per_frame_convs=per_frame_convs)).eval()
    video = random_video(1, 17, 16, 16)
    latents = tok.encoder(video)
    changed = video.clone()
    changed[:, :, 9:] = random_video(1, 8, 16, 16)  # frames 9.. belong to latent frames 3 and 4
    latents_changed = tok.encoder(changed)
    torch.testing.assert_close(latents_changed[:, :, :3], latents[:, :, :3], rtol=0, atol=1e-6)
    assert not torch.allclose(latents_changed[:, :, 3:], latents[:, :, 3:])


@torch.no_grad()
def test_prefix_clips_encode_like_the_full_clip():
    """The first frame is encoded on its own; any 1 + 4k prefix gives the same leading latents."""
    tok = VideoTokenizer(tiny_config()).eval()
    video = random_video(2, 17, 16, 16)
    full = tok.encoder(video)
    for frames in (1, 5, 9):
        torch.testing.assert_close(tok.encoder(video[:, :, :frames]), full[:, :, : 1 + (frames - 1) // 4],
                                   rtol=1e-5, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("per_frame_convs", [False, True])
def test_decoder_is_causal_in_time(per_frame_convs):
    tok = VideoTokenizer(tiny_config(per_frame_convs=per_frame_convs)).eval()
    ids = tok.encode(random_video(1, 17, 16, 16))
    full = tok.decode(ids)
    prefix = tok.decode(ids[:, :2])  # latent frames 0, 1 -> pixel frames 0..4
    torch.testing.assert_close(prefix, full[:, :, :5], rtol=1e-5, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("decoder_time_kernel,changed_frames", [(3, range(5, 17)), (1, range(5, 9))])
def test_decoder_time_kernel_sets_which_pixel_frames_a_latent_frame_reaches(decoder_time_kernel, changed_frames):
    """Latent frame 2 decodes to pixel frames 5..8; with kernel 3 the decoder's first conv also carries
    it into the later latent frames' pixels, with kernel 1 it reaches its own four frames only."""
    tok = VideoTokenizer(tiny_config(per_frame_convs=True, decoder_time_kernel=decoder_time_kernel)).eval()
    ids = torch.randint(0, tok.vocab_size, (1, 5, 4, 4))
    edited = ids.clone()
    edited[:, 2] = (ids[:, 2] + 1) % tok.vocab_size
    difference = (tok.decode(edited) - tok.decode(ids)).abs().amax(dim=(0, 1, 3, 4))
    assert [t for t in range(17) if difference[t] > 1e-6] == list(changed_frames)


@pytest.mark.parametrize("quantizer", ["fsq", "lfq", "vq"])
@torch.no_grad()
def test_ids_round_trip_through_codes(quantizer):
    tok = VideoTokenizer(tiny_config(quantizer=quantizer, lfq_bits=6, vq_codebook_size=32, vq_dim=4)).eval()
    quantized = tok.encode(random_video(2, 9, 16, 16), return_latents=True)
    codes = tok.quantizer.ids_to_codes(quantized.ids)
    torch.testing.assert_close(codes, quantized.codes)
    assert torch.equal(tok.quantizer.codes_to_ids(codes), quantized.ids)


@pytest.mark.parametrize("levels", [(5, 5, 5), (2, 2, 2, 2, 2, 2), (8, 2, 5)])
@torch.no_grad()
def test_fsq_decode_then_reencode_latents_gives_same_ids(levels):
    # Levels of 2 (binary dimensions) take FSQ's symmetric bound; ids must still round-trip.
    tok = VideoTokenizer(tiny_config(fsq_levels=levels)).eval()
    assert tok.vocab_size == math.prod(levels)
    ids = torch.randint(0, tok.vocab_size, (2, 3, 4, 4))
    codes = tok.quantizer.ids_to_codes(ids)
    assert torch.equal(tok.quantizer.codes_to_ids(codes), ids)


def test_quantizer_runs_in_float32_under_bf16_autocast():
    tok = VideoTokenizer(tiny_config()).eval()
    z = torch.randn(2, 3, 3, 4, 4)
    reference = tok.quantizer(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = tok.quantizer(z)
    assert under_autocast.codes.dtype == torch.float32
    assert torch.equal(under_autocast.ids, reference.ids)


def test_bad_inputs_are_user_errors():
    tok = VideoTokenizer(tiny_config())
    with pytest.raises(UserError, match="1 \\+ 4\\*k frames"):
        tok.encode(random_video(1, 8, 16, 16))
    with pytest.raises(UserError, match="multiples of 4"):
        tok.encode(random_video(1, 5, 18, 16))
    with pytest.raises(UserError, match="float"):
        tok.encode(torch.zeros(1, 3, 5, 16, 16, dtype=torch.uint8))
    with pytest.raises(UserError, match="valid ids are 0..124"):
        tok.decode(torch.full((1, 2, 4, 4), 125))


@pytest.mark.parametrize("field,value,message", [
    ("quantizer", "rvq", "valid: fsq, lfq, vq"),
    ("spatial_downsample", 6, "power of two"),
    ("channel_mults", (1, 2), "needs 2"),
    ("patch_size", 8, "at most"),
    ("norm_groups", 3, "must divide"),
    ("fsq_levels", (8, 1), ">= 2"),
    ("tanh_output", "yes", "true or false"),
    ("per_frame_convs", 1, "true or false"),
    ("decoder_time_kernel", 0, "positive integer"),
])
def test_config_validation_names_the_field(field, value, message):
    with pytest.raises(UserError, match=message) as err:
        tiny_config(**{field: value})
    assert field in str(err.value)


def test_unknown_preset():
    with pytest.raises(UserError, match="valid: synthetic, ucf101, k600"):
        TokenizerConfig.from_preset("imagenet")
