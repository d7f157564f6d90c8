"""Sampling controls: temperature, top-k, top-p and classifier-free guidance.

Every function works on logits of shape (..., V) at once -- in the sampler that is
(batch x block positions, vocab) -- so a block of 16 tokens is one draw, never a
Python loop over positions.

Top-k and top-p both keep the tokens at or above a threshold logit, so the filter
is one threshold per row, found without sorting the vocabulary (a full top-k and
sort of 64,000 logits costs more than the model's output head on a CPU):
1. bucket the logits by value into a fixed histogram below the row's maximum
   (counts and probability mass per bucket; a bucket is monotone in the logit);
2. the cumulative counts / masses name the bucket holding the top-k and the top-p
   boundary; everything in higher buckets is kept, everything lower dropped;
3. only the few logits inside a boundary bucket are sorted, to place it exactly.
A top-k of a small part of the vocabulary (top-k 20 of 1,000) takes `torch.topk`
instead, which is cheaper there; both give the same kept set.
The kept set is exactly that of the definitions, ties included: top-k keeps every
token whose logit is >= the k-th largest; top-p keeps a token when the mass of
the tokens with a strictly larger logit is below p (tied tokens stay together).
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import torch

from nbp.errors import UserError

BUCKETS = 2048  # histogram resolution: a boundary bucket holds ~V/BUCKETS tokens to sort
SMALL_K_FRACTION = 64  # top-k of at most 1/64 of the vocabulary goes through `topk` instead
CHUNK = 1024  # the draw sums the vocabulary in chunks of this many tokens, then searches one chunk
SPAN = 32.0  # logits (after temperature) further below the max share the last bucket; exp(-32) ~ 1e-14


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
        if not (self.temperature >= 0.0) or math.isinf(self.temperature):
            raise UserError(f"temperature={self.temperature} is invalid; use a finite value >= 0 (0 = greedy)")
        if self.top_k is not None and self.top_k < 0:
            raise UserError(f"top_k={self.top_k} is invalid; use a positive integer, or 0/None to disable")
        if self.top_p is not None and not (0.0 < self.top_p <= 1.0):
            raise UserError(f"top_p={self.top_p} is invalid; use a value in (0, 1], or None to disable")
        if not (self.cfg_scale >= 0.0) or math.isinf(self.cfg_scale):
            raise UserError(f"cfg_scale={self.cfg_scale} is invalid; use a finite value >= 0 (1 = no guidance)")

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


def _buckets(z: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Flat int32 index row * BUCKETS + bucket of every logit of z (R, V); the bucket is
    0 at the row maximum `top` and non-increasing in the logit.

    The buckets split the row's own range (at most SPAN), so a boundary bucket holds
    about V / BUCKETS tokens whatever the scale of the logits. One flat index lets a
    single `bincount` build the histograms of every row; int32 halves the traffic of int64.
    """
    rows = z.shape[0]
    bottom = torch.maximum(z.amin(-1, keepdim=True), top - SPAN)
    scale = BUCKETS / (top - bottom).clamp_min(1e-30)
    index_type = torch.int32 if rows * BUCKETS < 2**31 else torch.long
    # sub then mul: two vectorised passes, cheaper on CPU than one broadcast addcmul
    bucket = torch.sub(top, z).mul_(scale).clamp_(0, BUCKETS - 1).to(index_type)
    bucket += torch.arange(0, rows * BUCKETS, BUCKETS, device=z.device, dtype=index_type)[:, None]
    return bucket.view(-1)


def _first_reaching(cumulative: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(R,) index of the first bucket whose cumulative value reaches `target` (R, 1)."""
    return (cumulative < target).sum(-1).clamp_max_(BUCKETS - 1)


def _sorted_members(z: torch.Tensor, flat_buckets: torch.Tensor, collect: torch.Tensor):
    """The logits of z (R, V) whose bucket is marked in `collect` (R, BUCKETS), per row in
    descending order, padded with -inf: (values, their buckets, BUCKETS as padding)."""
    rows, vocab = z.shape
    inside = collect.reshape(-1).index_select(0, flat_buckets)
    (flat,) = inside.nonzero(as_tuple=True)  # ascending, so grouped by row
    row = torch.div(flat, vocab, rounding_mode="floor")
    counts = torch.bincount(row, minlength=rows)
    slot = torch.arange(flat.numel(), device=z.device) - (torch.cumsum(counts, 0) - counts)[row]
    width = max(int(counts.max()), 1)
    values = torch.full((rows, width), float("-inf"), device=z.device)
    buckets = torch.full((rows, width), BUCKETS, dtype=torch.long, device=z.device)
    values[row, slot] = z.reshape(-1)[flat]
    buckets[row, slot] = flat_buckets[flat].long() - row * BUCKETS
    values, order = values.sort(dim=1, descending=True)
    return values, buckets.gather(1, order)


def _mass_strictly_above(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """For sorted (descending) rows: the summed weight of the entries with a strictly larger value."""
    inclusive = torch.cumsum(weights, dim=-1)
    larger = torch.searchsorted(-values, -values, right=False)  # how many are strictly larger
    above = inclusive.gather(-1, (larger - 1).clamp_min(0))
    return torch.where(larger > 0, above, torch.zeros_like(above))


def _before(cumulative: torch.Tensor, bucket: torch.Tensor) -> torch.Tensor:
    """(R, 1) cumulative value of the buckets strictly before `bucket` (R, 1)."""
    return torch.where(bucket > 0, cumulative.gather(1, (bucket - 1).clamp_min(0)), 0.0)


def _small_k_threshold(z, k: int, top_p: float | None, top, weights) -> torch.Tensor:
    """The same threshold when k is a small part of the vocabulary: `topk` hands over the k
    best already sorted, cheaper than the histogram's passes (e.g. top-k 20 of 1,000)."""
    members = torch.topk(z, k, dim=-1).values  # descending
    threshold = members[:, -1:]
    if top_p is None:
        return threshold
    # logits tied with the k-th largest are kept too, so the kept mass is summed over the row
    kept_mass = (weights * (z >= threshold)).sum(-1, keepdim=True)
    # every logit strictly larger than a member is a member, so the members alone give the mass above
    kept = _mass_strictly_above(members, torch.exp(members - top)) < top_p * kept_mass
    lowest_kept = members.gather(1, (kept.sum(-1, keepdim=True) - 1).clamp_min(0))
    return torch.maximum(threshold, lowest_kept)


def keep_threshold(z: torch.Tensor, top_k: int | None, top_p: float | None):
    """(R, 1) threshold t per row of z (R, V): the kept tokens are exactly those with z >= t.

    Also returns exp(z - row max), which the draw reuses. One histogram pass, then one
    pass collecting the tokens of the boundary buckets: the top-k bucket, and the
    buckets where the top-p boundary can be (usually one; the exact top-k mass is
    only known after sorting the top-k bucket, so its range may span a few).
    """
    rows, vocab = z.shape
    top = z.amax(-1, keepdim=True)
    weights = torch.exp(z - top)
    k = top_k if top_k and top_k < vocab else None
    nucleus = top_p is not None and top_p < 1.0
    if k is None and not nucleus:
        return torch.full((rows, 1), float("-inf"), device=z.device), weights
    if k is not None and k * SMALL_K_FRACTION <= vocab:
        return _small_k_threshold(z, k, top_p if nucleus else None, top, weights), weights
    buckets = _buckets(z, top)
    mass = torch.bincount(buckets, weights.view(-1), minlength=rows * BUCKETS).view(rows, BUCKETS)
    cumulative = torch.cumsum(mass, -1)
    k_edge = torch.full((rows, 1), BUCKETS, device=z.device, dtype=torch.long)  # no top-k: beyond every bucket
    if k is not None:
        counts = torch.bincount(buckets, minlength=rows * BUCKETS).view(rows, BUCKETS)
        reached = torch.cumsum(counts, -1).float()
        k_edge = _first_reaching(reached, torch.full((rows, 1), float(k), device=z.device))[:, None]
        higher = _before(reached, k_edge).long()  # tokens kept for sure, in buckets above the edge
    # which buckets to collect, per row; one extra column stands for "no top-k edge"
    collect = torch.zeros(rows, BUCKETS + 1, dtype=torch.bool, device=z.device).scatter_(1, k_edge, True)
    if nucleus:
        # the kept mass lies between the buckets above the top-k edge and those plus the whole edge bucket
        low = _before(cumulative, k_edge) if k is not None else cumulative[:, -1:]
        high = cumulative.gather(1, k_edge.clamp_max(BUCKETS - 1)) if k is not None else low
        p_first = _first_reaching(cumulative, top_p * low)[:, None]
        p_last = _first_reaching(cumulative, top_p * high)[:, None]
        every = torch.arange(BUCKETS + 1, device=z.device)
        collect |= (every >= p_first) & (every <= p_last)
    members, member_buckets = _sorted_members(z, buckets, collect[:, :BUCKETS].contiguous())
    member_weights = torch.exp(members - top)
    threshold = torch.full((rows, 1), float("-inf"), device=z.device)
    kept_mass = cumulative[:, -1:]
    if k is not None:
        # members are sorted, and buckets above the edge come first: skip them, then count k
        offset = (member_buckets < k_edge).sum(-1, keepdim=True)
        threshold = members.gather(1, (offset + k - 1 - higher).clamp_(0, members.shape[1] - 1))
        in_edge = (member_buckets == k_edge) & (members >= threshold)
        kept_mass = _before(cumulative, k_edge) + (member_weights * in_edge).sum(-1, keepdim=True)
    if nucleus:
        candidate = (member_buckets >= p_first) & (member_buckets <= p_last) & (members >= threshold)
        above = _before(cumulative, p_first) + _mass_strictly_above(members, member_weights * candidate)
        kept = candidate & (above < top_p * kept_mass)
        lowest_kept = members.gather(1, (kept.sum(-1, keepdim=True) - 1).clamp_min(0))
        threshold = torch.maximum(threshold, lowest_kept)
    return threshold, weights


def filter_logits(logits: torch.Tensor, controls: SamplingControls) -> torch.Tensor:
    """Temperature, then top-k, then top-p (the order of the common samplers); dropped logits are -inf."""
    z = logits.float()
    if controls.temperature > 0:
        z = z / controls.temperature
    flat = z.reshape(-1, z.shape[-1])
    threshold, _ = keep_threshold(flat, controls.top_k, controls.top_p)
    return flat.masked_fill(flat < threshold, float("-inf")).view(z.shape)


def draw(logits: torch.Tensor, controls: SamplingControls, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample one token per row of logits (..., V) -> int64 (...).

    Inverse-CDF sampling over the kept tokens in vocabulary order: one uniform number
    per row, located in the running sum of their probabilities. A step consumes exactly
    one random number per (batch row, position), so two decoders that see the same
    logits with the same generator draw the same tokens. Greedy (temperature 0) consumes none.
    """
    if controls.temperature == 0:
        return logits.argmax(dim=-1)
    shape = logits.shape[:-1]
    z = logits.float().reshape(-1, logits.shape[-1])
    if controls.temperature != 1.0:
        z = z / controls.temperature
    threshold, weights = keep_threshold(z, controls.top_k, controls.top_p)
    # a float mask from `ge` and a multiply: much cheaper on CPU than a bool mask
    weights *= torch.ge(z, threshold, out=torch.empty_like(z))
    uniform = torch.rand((z.shape[0], 1), device=z.device, generator=generator)
    return _inverse_cdf(weights, uniform).view(shape)


def _inverse_cdf(weights: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """(R,) first index whose running sum of `weights` (R, V) exceeds `uniform` (R, 1) times the row's total.

    The index `searchsorted(cumsum(weights), uniform * total, right=True)` picks, without
    the running sum over the whole vocabulary: the sums of chunks of CHUNK tokens name the
    chunk, and the running sum (float64, rounded to float32 per entry, as CPU `cumsum`
    does) is taken inside that chunk only. The chunk sums are float32, so a draw that
    falls within float32 rounding of a token's boundary may pick the neighbour instead;
    the tokens are still drawn from the kept distribution. right=True picks the first index whose sum exceeds the draw, and the
    pick is held to the last token of positive weight, so a dropped token never is.
    """
    rows, vocab = weights.shape
    size = min(CHUNK, vocab)
    whole = vocab // size
    sums = [weights[:, : whole * size].unfold(1, size, size).sum(-1)]
    if whole * size < vocab:
        sums.append(weights[:, whole * size:].sum(-1, keepdim=True))
    ends = torch.cumsum(torch.cat(sums, dim=1), dim=1, dtype=torch.float64)  # running sum at each chunk's end
    ends32 = ends.float()
    target = uniform * ends32[:, -1:]
    chunk = torch.minimum(torch.searchsorted(ends32, target, right=True),
                          torch.searchsorted(ends32, ends32[:, -1:].contiguous()))  # the last chunk with weight
    start = torch.where(chunk > 0, ends.gather(1, (chunk - 1).clamp_min(0)), 0.0)
    position = chunk * size + torch.arange(size, device=weights.device)
    inside = weights.gather(1, position.clamp_max(vocab - 1)).double() * (position < vocab)
    running = (start + torch.cumsum(inside, dim=1)).float()
    offset = torch.minimum(torch.searchsorted(running, target, right=True),
                           torch.searchsorted(running, running[:, -1:].contiguous()))  # the last token with weight
    return (chunk * size + offset).view(rows)
