"""StreamingDecoder: turn tokens into pixels one latent frame at a time, at a constant cost per frame.

The decoder is causal in time: the pixels of latent frame t depend on latent frames
<= t only. Decoding the clip again whenever a frame arrives would cost more at every
frame; instead the stream keeps, for every causal conv, the last k - 1 frames of its
input (all its kernel reaches back to) and runs the network on the new frame alone.
The only other place time enters is depth-to-space upsampling, which drops frames
for the clip's very first latent frame only (it stands for one pixel frame).
Everything else (group norm, activations, 1x1x1 convs) works frame by frame.

    stream = StreamingDecoder(tokenizer)
    for ids in latent_frames:            # (B, H', W') each
        pixels = stream.push(ids)        # float [-1, 1] (B, 3, n, H, W): n = 1, then temporal_downsample

Concatenated, the pushes equal `VideoTokenizer.decode` of the whole grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tokenizer import layers, magvit2
from tokenizer.decoder import Decoder
from tokenizer.errors import UserError

_CONVS = (layers.CausalConv3d, magvit2.CausalConv3d)
_UPSAMPLERS = (layers.Upsample, magvit2.Depth2Space3D)
# Modules that see each frame on its own: they need no state.
_PER_FRAME = (layers.FrameGroupNorm, magvit2.GroupNorm3D, magvit2.Swish, nn.Identity)


class StreamingDecoder:
    """Decode a token grid latent frame by latent frame, keeping each causal layer's past."""

    def __init__(self, tokenizer, dtype=None):
        """dtype: compute dtype of the decoder (default bfloat16 on CUDA, float32 on CPU), as in decode."""
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next push starts a new clip."""
        self._past: dict[nn.Module, torch.Tensor] = {}
        self._shape: tuple[int, int, int] | None = None
        self.latent_frames = 0  # latent frames pushed so far
        self.frames = 0  # pixel frames returned so far

    @torch.no_grad()
    def push(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids of the next latent frame (B, H', W'), or of several (B, T', H', W'), -> their pixels.

        Returns float32 [-1, 1] (B, 3, n, H, W): n = 1 + temporal_downsample * (T' - 1) for the
        clip's first push, temporal_downsample * T' after.
        """
        ids = self._check(ids)
        tok = self.tokenizer
        with tok._compute(ids.device, self.dtype):
            codes = tok.quantizer.ids_to_codes(ids).to(tok.decoder.last_layer_weight.dtype)
            video = self._decode(codes)
        self.latent_frames += ids.shape[1]
        self.frames += video.shape[2]
        return video.float().clamp(-1.0, 1.0)

    def _check(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.ndim == 3:
            ids = ids[:, None]
        if ids.ndim != 4 or ids.shape[1] < 1:
            raise UserError(f"pushed tokens have shape {tuple(ids.shape)}; expected one latent frame (B, H', W') "
                            "or several (B, T', H', W')")
        shape = (ids.shape[0], *ids.shape[2:])
        if self._shape is not None and shape != self._shape:
            raise UserError(f"pushed tokens are (B, H', W') = {shape}; this stream started with {self._shape} "
                            "(call reset() to start a new clip)")
        vocab = self.tokenizer.vocab_size
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            raise UserError(f"token ids range over [{int(ids.min())}, {int(ids.max())}]; valid ids are 0..{vocab - 1}")
        self._shape = shape
        return ids

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        dec = self.tokenizer.decoder
        if isinstance(dec, Decoder):
            h = self._run(dec.stages, self._run(dec.mid, self._run(dec.conv_in, z)))
            return dec.to_pixels(self._run(dec.conv_out, F.silu(dec.norm_out(h))))
        if isinstance(dec, magvit2.Magvit2Decoder):
            return dec.to_pixels(self._run(dec.layers, z))
        raise UserError(f"no streaming decode for a {type(dec).__name__}; use VideoTokenizer.decode")

    def _run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """`module(x)` for the new frames only, with the past of every causal conv inside it."""
        if isinstance(module, _CONVS):
            return self._conv(module, x)
        if isinstance(module, _UPSAMPLERS):
            x = module.unfold(x)
            return x[:, :, _time_factor(module) - 1:] if self.latent_frames == 0 else x
        if isinstance(module, (nn.Sequential, nn.ModuleList)):
            for layer in module:
                x = self._run(layer, x)
            return x
        if isinstance(module, layers.ResBlock3d):
            h = self._run(module.conv1, F.silu(module.norm1(x)))
            h = self._run(module.conv2, F.silu(module.norm2(h)))
            return self._run(module.skip, x) + h
        if isinstance(module, magvit2.ResidualUnit):
            return self._run(module.fn, x) + self._run(module.residual_fn, x)
        if isinstance(module, _PER_FRAME) or (isinstance(module, nn.Conv3d) and _is_per_frame(module)):
            return module(x)
        raise UserError(f"no streaming decode for the layer {type(module).__name__}; use VideoTokenizer.decode")

    def _conv(self, conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A causal conv over [its kept past frames, x]; the first push's past replicates frame 0 (as the padding does)."""
        if conv.conv.stride[0] != 1:
            raise UserError("a decoder with time-strided convs cannot be streamed; use VideoTokenizer.decode")
        pad = _time_pad(conv)
        if pad:
            past = self._past.get(conv)
            if past is None:
                past = x[:, :, :1].expand(-1, -1, pad, -1, -1)
            x = torch.cat([past, x], dim=2)
            self._past[conv] = x[:, :, -pad:]
        if isinstance(conv, magvit2.CausalConv3d):
            x = F.pad(x, conv.padding[:4] + (0, 0), mode="replicate")  # space only; time is handled above
        return conv.conv(x)


def _time_pad(conv: nn.Module) -> int:
    return conv.time_pad if isinstance(conv, layers.CausalConv3d) else conv.padding[4]


def _time_factor(upsampler: nn.Module) -> int:
    return upsampler.ft if isinstance(upsampler, layers.Upsample) else upsampler.factors[0]


def _is_per_frame(conv: nn.Conv3d) -> bool:
    return conv.kernel_size[0] == 1 and conv.stride[0] == 1 and conv.padding[0] == 0
