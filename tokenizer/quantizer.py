"""One interface over the quantizers of vector-quantize-pytorch: FSQ, LFQ and classic VQ.

Quantization always runs in float32 with autocast switched off: under bf16 the bin
edges of FSQ move and only part of the codebook gets used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn
from vector_quantize_pytorch import FSQ, LFQ, VectorQuantize

from tokenizer.config import TokenizerConfig
from tokenizer.fsq_reference import ReferenceFSQ


@dataclass
class Quantized:
    codes: torch.Tensor  # (B, D, T', H', W') float32, straight-through gradients to the encoder
    ids: torch.Tensor  # (B, T', H', W') int64
    aux_loss: torch.Tensor  # scalar: LFQ entropy loss / VQ commitment loss / 0 for FSQ


class Quantizer(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.kind = config.quantizer
        self.vocab_size = config.vocab_size
        dim = config.latent_dim
        if self.kind == "fsq" and config.arch == "magvit2":
            self.impl = ReferenceFSQ(config.fsq_levels)
        elif self.kind == "fsq":
            # vector-quantize-pytorch takes levels of 2 (binary dimensions) only with its symmetric bound.
            self.impl = FSQ(levels=list(config.fsq_levels), dim=dim, preserve_symmetry=2 in config.fsq_levels)
        elif self.kind == "lfq":
            self.impl = LFQ(dim=dim, codebook_size=self.vocab_size)
        else:
            self.impl = VectorQuantize(dim=dim, codebook_size=self.vocab_size)

    def forward(self, z: torch.Tensor) -> Quantized:
        b, _, t, h, w = z.shape
        tokens = rearrange(z, "b d t h w -> b (t h w) d")
        with torch.autocast(device_type=z.device.type, enabled=False):
            tokens = tokens.float()
            if self.kind == "fsq":
                codes, ids = self.impl(tokens)
                aux = tokens.new_zeros(())
            else:
                codes, ids, aux = self.impl(tokens)[:3]
        codes = rearrange(codes, "b (t h w) d -> b d t h w", t=t, h=h, w=w)
        ids = rearrange(ids.long(), "b (t h w) -> b t h w", t=t, h=h, w=w)
        return Quantized(codes=codes, ids=ids, aux_loss=aux.float().mean())

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T', H', W') int ids -> (B, D, T', H', W') float32 codes."""
        b, t, h, w = ids.shape
        flat = rearrange(ids.long(), "b t h w -> b (t h w)")
        with torch.autocast(device_type=ids.device.type, enabled=False):
            if self.kind == "fsq":
                codes = self.impl.indices_to_codes(flat.int())
            elif self.kind == "lfq":
                codes = self.impl.indices_to_codes(flat)
            else:
                codes = self.impl.get_output_from_indices(flat)
        return rearrange(codes.float(), "b (t h w) d -> b d t h w", t=t, h=h, w=w)

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, D, T', H', W') codes -> (B, T', H', W') int64 ids: the inverse of `ids_to_codes` on the codebook."""
        b, _, t, h, w = codes.shape
        flat = rearrange(codes.float(), "b d t h w -> b (t h w) d")
        if self.kind == "fsq":
            ids = self.impl.codes_to_indices(flat)
        elif self.kind == "lfq":
            ids = ((flat > 0).long() * self.impl.mask.long()).sum(-1)
        else:
            codebook = self.impl.codebook.float().to(flat.device)
            ids = torch.cdist(flat, codebook.expand(b, *codebook.shape)).argmin(-1)
        return rearrange(ids.long(), "b (t h w) -> b t h w", t=t, h=h, w=w)
