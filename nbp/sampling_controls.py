"""Sampling controls: temperature, top-k, top-p and classifier-free guidance.

Every function works on logits of shape (..., V) at once -- in the sampler that is
(batch x block positions, vocab) -- so a block of 16 tokens costs one sort and
one draw, never a Python loop over positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nbp.errors import UserError


@dataclass(frozen=True)
class SamplingControls:
    """How logits become tokens.

    temperature 0 means greedy (argmax). top_k None/0 and top_p None/1.0 disable the filters.
    cfg_scale follows the "1 = unguided" convention: logits = uncond + s * (cond - uncond);
    cfg_ramp raises the scale linearly from 1 at the first step to cfg_scale at the last.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    cfg_scale: float = 1.0
    cfg_ramp: bool = False

    def __post_init__(self):
        if not (self.temperature >= 0.0):
            raise UserError(f"temperature={self.temperature} is invalid; use a value >= 0 (0 = greedy)")
        if self.top_k is not None and self.top_k < 0:
            raise UserError(f"top_k={self.top_k} is invalid; use a positive integer, or 0/None to disable")
        if self.top_p is not None and not (0.0 < self.top_p <= 1.0):
            raise UserError(f"top_p={self.top_p} is invalid; use a value in (0, 1], or None to disable")
        if not (self.cfg_scale >= 0.0):
            raise UserError(f"cfg_scale={self.cfg_scale} is invalid; use a value >= 0 (1 = no guidance)")

    @property
    def guided(self) -> bool:
        """Whether the batch is doubled with the null condition (a ramp always is, even to scale 1)."""
        return self.cfg_scale != 1.0 or self.cfg_ramp

    def scale_at(self, step: int, num_steps: int) -> float:
        """Guidance scale for decoding step `step` of `num_steps` (0-based)."""
        if not self.cfg_ramp or num_steps <= 1:
            return self.cfg_scale
        return 1.0 + (self.cfg_scale - 1.0) * step / (num_steps - 1)


# Named settings. "released": what the reference implementation's evaluation scripts use for
# the published FVDs (top-k 16000, then top-p 0.9, temperature 1, no guidance).
PRESETS: dict[str, dict] = {
    "released": dict(temperature=1.0, top_k=16000, top_p=0.9, cfg_scale=1.0),
}


def apply_preset(name: str | None, **given) -> dict:
    """The preset's settings with the ones given explicitly (not None) on top."""
    given = {k: v for k, v in given.items() if v is not None}
    if name is None:
        return given
    if name not in PRESETS:
        raise UserError(f"--sampling {name!r} is unknown; valid: {', '.join(PRESETS)}")
    return {**PRESETS[name], **given}


def guide(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance, uncond + scale * (cond - uncond).

    Written as cond + (scale - 1) * (cond - uncond): the same value, but at scale 1
    it returns the conditional logits bit for bit, so "guided at scale 1" and
    "unguided" sample exactly the same tokens.
    """
    if scale == 1.0:
        return cond_logits
    return cond_logits + (scale - 1.0) * (cond_logits - uncond_logits)


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the k largest logits of each row, set the rest to -inf."""
    if not k or k >= logits.shape[-1]:
        return logits
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose mass reaches p.

    A token is kept when the mass of the tokens ranked strictly above it is still
    below p; this always keeps the most likely token and stops right after the
    cumulative mass first reaches p.
    """
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    sorted_probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_above = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    drop_sorted = mass_above >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(logits: torch.Tensor, controls: SamplingControls) -> torch.Tensor:
    """Temperature, then top-k, then top-p (the order of the common samplers)."""
    logits = logits.float()
    if controls.temperature > 0:
        logits = logits / controls.temperature
    logits = top_k_filter(logits, controls.top_k)
    return top_p_filter(logits, controls.top_p)


def _candidates(logits: torch.Tensor, controls: SamplingControls):
    """The tokens that survive top-k and top-p, as (candidate logits, their token ids or None).

    With top-k the k best come sorted from `topk`, so top-p only sorts k values,
    not the whole vocabulary (64k for the paper's tokenizer). Dropped candidates
    get -inf. Same set as `filter_logits`, but cheaper.
    """
    k = controls.top_k if controls.top_k and controls.top_k < logits.shape[-1] else None
    nucleus = controls.top_p is not None and controls.top_p < 1.0
    if k is not None:
        values, ids = torch.topk(logits, k, dim=-1)
    elif nucleus:
        values, ids = torch.sort(logits, dim=-1, descending=True)
    else:
        return logits, None
    if nucleus:
        probs = torch.softmax(values, dim=-1)
        mass_above = torch.cumsum(probs, dim=-1) - probs
        values = values.masked_fill(mass_above >= controls.top_p, float("-inf"))
    return values, ids


def draw(logits: torch.Tensor, controls: SamplingControls, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample one token per row of logits (..., V) -> int64 (...).

    Inverse-CDF sampling: one uniform number per row, located in the cumulative
    distribution of the candidates. A step consumes exactly one random number per
    (batch row, position), so two decoders that see the same logits with the same
    generator draw the same tokens. Greedy (temperature 0) consumes none.
    """
    logits = logits.float()
    if controls.temperature == 0:
        return logits.argmax(dim=-1)
    values, ids = _candidates(logits / controls.temperature, controls)
    cdf = torch.cumsum(torch.softmax(values, dim=-1), dim=-1)
    uniform = torch.rand(cdf.shape[:-1] + (1,), device=cdf.device, generator=generator)
    # right=True picks the first index whose cdf exceeds the draw, which never is a
    # zero-probability (filtered) candidate: its cdf equals its predecessor's.
    choice = torch.searchsorted(cdf, uniform * cdf[..., -1:], right=True).clamp_max_(cdf.shape[-1] - 1)
    return (choice if ids is None else ids.gather(-1, choice)).squeeze(-1)
