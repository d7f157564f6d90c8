"""StreamingDecoder: latent frame by latent frame, the same pixels as decoding the whole clip, at a constant cost."""

import pytest
import torch
from torch import nn

from tests.tokenizer.helpers import tiny_config
from tokenizer import TokenizerConfig, VideoTokenizer
from tokenizer.errors import UserError
from tokenizer.streaming import StreamingDecoder

# float32 on CPU: the same convolutions over fewer frames differ from the whole clip's by rounding
# only (about 1e-6 seen); a missing or misplaced past frame moves pixels by ~0.1.
TOLERANCE = 1e-5

CONFIGS = {
    "kernel3": tiny_config(),
    "kernel1": tiny_config(decoder_time_kernel=1),
    "per_frame_tanh_patch": tiny_config(per_frame_convs=True, tanh_output=True, patch_size=2),
    "per_frame_kernel1": tiny_config(per_frame_convs=True, decoder_time_kernel=1),
    "time2_space8": tiny_config(temporal_downsample=2, spatial_downsample=8, channel_mults=(1, 1, 2, 2)),
    "time8": tiny_config(temporal_downsample=8, channel_mults=(1, 1, 2, 2)),
    "magvit2": TokenizerConfig(arch="magvit2", base_channels=8, channel_mults=(1, 1, 2), num_res_blocks=1,
                               norm_groups=4, temporal_downsample=4, spatial_downsample=4, fsq_levels=(5, 5, 5)),
}


def random_tokenizer(config: TokenizerConfig, seed: int = 0) -> VideoTokenizer:
    """Random weights everywhere: the residual branches start at zero, which would hide their convs."""
    torch.manual_seed(seed)
    tok = VideoTokenizer(config).eval()
    with torch.no_grad():
        for name, p in tok.decoder.named_parameters():
            if p.dim() > 1 and not name.endswith("beta"):  # conv weights, scaled to keep unit variance
                p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5))
            else:  # biases, norm scales, Swish betas
                p.copy_(torch.randn_like(p) * 0.1 + (0.0 if name.endswith("bias") else 1.0))
    return tok


def stream_all(tok, ids, chunks=None):
    stream = StreamingDecoder(tok)
    chunks = chunks or [1] * ids.shape[1]
    parts, start = [], 0
    for n in chunks:
        piece = ids[:, start] if n == 1 else ids[:, start:start + n]
        parts.append(stream.push(piece))
        start += n
    return parts, stream


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("batch,grid", [(1, (5, 4, 4)), (2, (7, 3, 5))])
def test_pushes_concatenate_to_the_full_decode(name, batch, grid):
    config = CONFIGS[name]
    tok = random_tokenizer(config, seed=batch)
    ids = torch.randint(tok.vocab_size, (batch, *grid), generator=torch.Generator().manual_seed(len(name)))
    full = tok.decode(ids)
    assert full.std() > 0.05  # the weights make a picture that a wrong past would change
    parts, stream = stream_all(tok, ids)
    t = config.temporal_downsample
    assert [p.shape[2] for p in parts] == [1] + [t] * (grid[0] - 1)
    assert stream.latent_frames == grid[0] and stream.frames == full.shape[2]
    streamed = torch.cat(parts, dim=2)
    assert streamed.shape == full.shape and streamed.dtype == torch.float32
    assert (streamed - full).abs().max() < TOLERANCE


def test_a_past_frame_matters():
    """Guards the tolerance above: decoding latent frame 1 without frame 0's past gives other pixels."""
    tok = random_tokenizer(CONFIGS["kernel3"])
    ids = torch.randint(tok.vocab_size, (1, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    full = tok.decode(ids)
    alone = StreamingDecoder(tok)
    alone.push(ids[:, 1])  # frame 1 pushed as a first frame: replicate padding instead of frame 0
    without_past = alone.push(ids[:, 2])
    assert (without_past - full[:, :, 5:9]).abs().max() > 100 * TOLERANCE


def test_chunks_of_several_latent_frames_and_reset():
    tok = random_tokenizer(CONFIGS["kernel3"])
    ids = torch.randint(tok.vocab_size, (2, 6, 4, 4), generator=torch.Generator().manual_seed(1))
    full = tok.decode(ids)
    parts, stream = stream_all(tok, ids, chunks=[2, 1, 3])
    assert [p.shape[2] for p in parts] == [5, 4, 12]
    assert (torch.cat(parts, dim=2) - full).abs().max() < TOLERANCE
    stream.reset()  # a new clip of another batch size
    other = ids[:1, :3].flip(1)
    again = torch.cat([stream.push(other[:, i]) for i in range(3)], dim=2)
    assert (again - tok.decode(other)).abs().max() < TOLERANCE


@pytest.mark.parametrize("name", ["kernel3", "magvit2"])
def test_cost_per_push_is_constant(name):
    """Every conv sees the same number of frames at push 2 as at push 12, and the kept state does not grow."""
    tok = random_tokenizer(CONFIGS[name])
    seen: list[int] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[2]))
             for m in tok.decoder.modules() if isinstance(m, nn.Conv3d)]
    stream = StreamingDecoder(tok)
    ids = torch.randint(tok.vocab_size, (1, 13, 4, 4), generator=torch.Generator().manual_seed(2))
    per_push, state_size = [], []
    for t in range(13):
        seen.clear()
        stream.push(ids[:, t])
        per_push.append(list(seen))
        state_size.append(sum(p.numel() for p in stream._past.values()))
    for h in hooks:
        h.remove()
    assert per_push[1] == per_push[2] == per_push[12]
    assert max(per_push[12]) <= 2 * CONFIGS[name].temporal_downsample + 2  # new frames + a kernel's past
    assert state_size[1] == state_size[12] > 0


def test_bad_pushes_are_one_clear_error():
    tok = random_tokenizer(CONFIGS["kernel1"])
    stream = StreamingDecoder(tok)
    with pytest.raises(UserError, match=r"expected one latent frame \(B, H', W'\)"):
        stream.push(torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(UserError, match=r"valid ids are 0\.\.124"):
        stream.push(torch.full((1, 4, 4), 125))
    stream.push(torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(UserError, match=r"this stream started with \(1, 4, 4\)"):
        stream.push(torch.zeros(1, 4, 5, dtype=torch.long))


@pytest.mark.gpu
def test_bfloat16_on_cuda_is_as_close_as_the_whole_clip_decode():
    """On CUDA both decodes run in bfloat16 by default: the stream must be as near the float32 pixels."""
    tok = random_tokenizer(CONFIGS["kernel3"]).cuda()
    ids = torch.randint(tok.vocab_size, (2, 5, 4, 4), generator=torch.Generator().manual_seed(3)).cuda()
    exact = tok.decode(ids, dtype=torch.float32)
    whole = tok.decode(ids)
    stream = StreamingDecoder(tok)
    streamed = torch.cat([stream.push(ids[:, t]) for t in range(5)], dim=2)
    assert streamed.shape == exact.shape and streamed.dtype == torch.float32
    assert (streamed - exact).abs().max() <= 2 * (whole - exact).abs().max() + 1e-2
