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

from nbp.draw_buffers import DrawBuffers
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


@torch.no_grad()  # sampling is never differentiated, and out= ops refuse tensors that need grad
def guide(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, scale: float,
          buffers: DrawBuffers | None = None) -> torch.Tensor:
    """Classifier-free guidance, uncond + scale * (cond - uncond).

    Written as cond + (scale - 1) * (cond - uncond): the same value, but at scale 1
    it returns the conditional logits bit for bit, so "guided at scale 1" and
    "unguided" sample exactly the same tokens. With `buffers`, the result is written
    into their buffer "guided" (overwritten by the next call).
    """
    if scale == 1.0:
        return cond_logits
    buffers = buffers or DrawBuffers(cond_logits.device)
    out = buffers("guided", tuple(cond_logits.shape), cond_logits.dtype)
    return torch.sub(cond_logits, uncond_logits, out=out).mul_(scale - 1.0).add_(cond_logits)


def _ones(buffers: DrawBuffers, n: int) -> torch.Tensor:
    """n int64 ones without allocating them: one element seen n times."""
    return buffers("one", (1,), torch.long).fill_(1).expand(n)


def _buckets(z: torch.Tensor, top: torch.Tensor, buffers: DrawBuffers) -> torch.Tensor:
    """Flat index row * BUCKETS + bucket of every logit of z (R, V); the bucket is
    0 at the row maximum `top` and non-increasing in the logit.

    The buckets split the row's own range (at most SPAN), so a boundary bucket holds
    about V / BUCKETS tokens whatever the scale of the logits. One flat index lets a
    single scatter build the histograms of every row. It is int64 because `scatter_add_`
    takes no other, and on CPU `scatter_add_` builds a histogram faster than `index_add_`
    with int32 indices, more than paying for the wider index.
    """
    rows, vocab = z.shape
    bottom = torch.maximum(z.amin(-1, keepdim=True), top - SPAN)
    scale = BUCKETS / (top - bottom).clamp_min(1e-30)
    # sub then mul: two vectorised passes, cheaper on CPU than one broadcast addcmul
    value = torch.sub(top, z, out=buffers("scratch", (rows, vocab))).mul_(scale).clamp_(0, BUCKETS - 1)
    bucket = buffers("buckets", (rows, vocab), torch.long).copy_(value)  # truncates, as .to() does
    row_starts = buffers("row_starts", (rows,), torch.long)
    bucket += torch.arange(0, rows * BUCKETS, BUCKETS, out=row_starts)[:, None]
    return bucket.view(-1)


def _histogram(buffers: DrawBuffers, name: str, flat_buckets: torch.Tensor, rows: int, weights: torch.Tensor):
    """(R, BUCKETS) sums of `weights` per bucket, into buffer `name`: a `bincount` that reuses its output."""
    out = buffers(name, (rows * BUCKETS,), weights.dtype).zero_()
    return out.scatter_add_(0, flat_buckets, weights).view(rows, BUCKETS)


def _first_reaching(cumulative: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(R,) index of the first bucket whose cumulative value reaches `target` (R, 1).

    The count of buckets below the target: the sums never decrease along a row, so a
    binary search gives it without a pass over the histogram.
    """
    return torch.searchsorted(cumulative, target).view(-1).clamp_max_(BUCKETS - 1)


def _sorted_members(z: torch.Tensor, flat_buckets: torch.Tensor, collect: torch.Tensor, buffers: DrawBuffers,
                    counts: torch.Tensor | None = None):
    """The logits of z (R, V) whose bucket is marked in `collect` (R, BUCKETS), per row in
    descending order, padded with -inf: (values, their buckets, BUCKETS as padding).
    counts: the (R, BUCKETS) token counts, when known, spare a pass counting the members."""
    rows, vocab = z.shape
    inside = torch.index_select(collect.view(-1), 0, flat_buckets, out=buffers("inside", (rows * vocab,), torch.bool))
    # the member count sizes the member buffers exactly, so `nonzero` writes in place
    if counts is None:
        count = int(torch.count_nonzero(inside))
    else:
        left_out = torch.logical_not(collect, out=buffers("left_out", (rows, BUCKETS), torch.bool))
        member_counts = buffers("member_counts", (rows, BUCKETS), counts.dtype).copy_(counts)
        count = int(member_counts.masked_fill_(left_out, 0).sum())
    flat = torch.nonzero(inside, out=buffers("flat", (count, 1), torch.long)).view(count)  # grouped by row
    row = torch.div(flat, vocab, rounding_mode="floor", out=buffers("member_row", (count,), torch.long))
    per_row = buffers("per_row", (rows,), torch.long).zero_().index_add_(0, row, _ones(buffers, count))
    row_start = torch.cumsum(per_row, 0, out=buffers("row_start", (rows,), torch.long)).sub_(per_row)
    width = max(int(per_row.max()), 1)
    # where each member goes in the (R, width) table: row * width + its rank among its row's members
    position = torch.arange(count, out=buffers("position", (count,), torch.long))
    position -= torch.index_select(row_start, 0, row, out=buffers("member_scratch", (count,), torch.long))
    position += torch.mul(row, width, out=buffers("member_scratch", (count,), torch.long))
    values = buffers("member_values", (rows, width)).fill_(float("-inf"))
    logits = torch.index_select(z.reshape(-1), 0, flat, out=buffers("member_logits", (count,)))
    values.view(-1).index_copy_(0, position, logits)
    own = buffers("member_own", (count,), torch.long).copy_(
        torch.index_select(flat_buckets, 0, flat, out=buffers("member_flat", (count,), flat_buckets.dtype)))
    own -= torch.mul(row, BUCKETS, out=buffers("member_scratch", (count,), torch.long))  # the bucket within the row
    # float (exact up to 2^24): compared with float logits and weights without casting copies
    buckets = buffers("member_buckets", (rows, width)).fill_(BUCKETS)
    buckets.view(-1).index_copy_(0, position, buffers("member_own_float", (count,)).copy_(own))
    sorted_out = (buffers("sorted_values", (rows, width)), buffers("order", (rows, width), torch.long))
    values, order = torch.sort(values, dim=1, descending=True, out=sorted_out)
    return values, torch.gather(buckets, 1, order, out=buffers("sorted_buckets", (rows, width)))


def _mass_strictly_above(values: torch.Tensor, weights: torch.Tensor, buffers: DrawBuffers) -> torch.Tensor:
    """For sorted (descending) rows: the summed weight of the entries with a strictly larger value."""
    shape = tuple(values.shape)
    inclusive = torch.cumsum(weights, dim=-1, out=buffers("inclusive", shape))
    negated = torch.neg(values, out=buffers("negated", shape))
    # how many are strictly larger
    larger = torch.searchsorted(negated, negated, right=False, out=buffers("larger", shape, torch.long))
    last_larger = torch.sub(larger, 1, out=buffers("last_larger", shape, torch.long)).clamp_min_(0)
    above = torch.gather(inclusive, -1, last_larger, out=buffers("above", shape))
    return above.masked_fill_(torch.eq(larger, 0, out=buffers("none_larger", shape, torch.bool)), 0.0)


def _before(cumulative: torch.Tensor, bucket: torch.Tensor) -> torch.Tensor:
    """(R, 1) cumulative value of the buckets strictly before `bucket` (R, 1)."""
    return torch.where(bucket > 0, cumulative.gather(1, (bucket - 1).clamp_min(0)), 0.0)


def _lowest_kept(members: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """(R, 1) smallest of the sorted (descending) members that `kept` (1.0 / 0.0) marks (they come first)."""
    return members.gather(1, (kept.sum(-1, keepdim=True).long() - 1).clamp_min(0))


def _small_k_threshold(z, k: int, top_p: float | None, top, weights, buffers: DrawBuffers) -> torch.Tensor:
    """The same threshold when k is a small part of the vocabulary: `topk` hands over the k
    best already sorted, cheaper than the histogram's passes (e.g. top-k 20 of 1,000)."""
    rows = z.shape[0]
    members, _ = torch.topk(z, k, dim=-1, out=(buffers("top_values", (rows, k)),
                                               buffers("top_indices", (rows, k), torch.long)))  # descending
    threshold = members[:, -1:]
    if top_p is None:
        return threshold
    # logits tied with the k-th largest are kept too, so the kept mass is summed over the row
    kept_mass = torch.ge(z, threshold, out=buffers("scratch", tuple(z.shape))).mul_(weights).sum(-1, keepdim=True)
    # every logit strictly larger than a member is a member, so the members alone give the mass above
    member_weights = torch.sub(members, top, out=buffers("member_weights", (rows, k))).exp_()
    above = _mass_strictly_above(members, member_weights, buffers)
    kept = torch.lt(above, top_p * kept_mass, out=buffers("member_kept", (rows, k)))
    return torch.maximum(threshold, _lowest_kept(members, kept))


@torch.no_grad()
def keep_threshold(z: torch.Tensor, top_k: int | None, top_p: float | None, buffers: DrawBuffers | None = None):
    """(R, 1) threshold t per row of z (R, V): the kept tokens are exactly those with z >= t.

    Also returns exp(z - row max), which the draw reuses. One histogram pass, then one
    pass collecting the tokens of the boundary buckets: the top-k bucket, and the
    buckets where the top-p boundary can be (usually one; the exact top-k mass is
    only known after sorting the top-k bucket, so its range may span a few).
    Everything larger than (R, 1) goes into `buffers` (fresh ones when None).
    """
    buffers = buffers or DrawBuffers(z.device)
    rows, vocab = z.shape
    top = z.amax(-1, keepdim=True)
    weights = torch.sub(z, top, out=buffers("weights", (rows, vocab))).exp_()
    k = top_k if top_k and top_k < vocab else None
    nucleus = top_p is not None and top_p < 1.0
    if k is None and not nucleus:
        return torch.full((rows, 1), float("-inf"), device=z.device), weights
    if k is not None and k * SMALL_K_FRACTION <= vocab:
        return _small_k_threshold(z, k, top_p if nucleus else None, top, weights, buffers), weights
    buckets = _buckets(z, top, buffers)
    mass = _histogram(buffers, "mass", buckets, rows, weights.view(-1))
    cumulative = torch.cumsum(mass, -1, out=buffers("cumulative", (rows, BUCKETS)))
    k_edge = torch.full((rows, 1), BUCKETS, device=z.device, dtype=torch.long)  # no top-k: beyond every bucket
    if k is not None:
        counts = _histogram(buffers, "counts", buckets, rows, _ones(buffers, buckets.numel()))
        reached_exact = torch.cumsum(counts, -1, out=buffers("reached_exact", (rows, BUCKETS), torch.long))
        reached = buffers("reached", (rows, BUCKETS)).copy_(reached_exact)
        k_edge = _first_reaching(reached, torch.full((rows, 1), float(k), device=z.device))[:, None]
        higher = _before(reached, k_edge).long()  # tokens kept for sure, in buckets above the edge
    # which buckets to collect, per row; one extra column stands for "no top-k edge"
    collect = buffers("collect", (rows, BUCKETS + 1), torch.bool).zero_().scatter_(1, k_edge, True)
    if nucleus:
        # the kept mass lies between the buckets above the top-k edge and those plus the whole edge bucket
        low = _before(cumulative, k_edge) if k is not None else cumulative[:, -1:]
        high = cumulative.gather(1, k_edge.clamp_max(BUCKETS - 1)) if k is not None else low
        p_first = _first_reaching(cumulative, top_p * low)[:, None]
        p_last = _first_reaching(cumulative, top_p * high)[:, None]
        every = torch.arange(BUCKETS + 1, out=buffers("every", (BUCKETS + 1,), torch.long))
        boundary = torch.ge(every, p_first, out=buffers("boundary", (rows, BUCKETS + 1), torch.bool))
        boundary &= torch.le(every, p_last, out=buffers("boundary_end", (rows, BUCKETS + 1), torch.bool))
        collect |= boundary
    collect = buffers("collect_buckets", (rows, BUCKETS), torch.bool).copy_(collect[:, :BUCKETS])
    members, member_buckets = _sorted_members(z, buckets, collect, buffers, counts if k is not None else None)
    shape = tuple(members.shape)
    member_weights = torch.sub(members, top, out=buffers("member_weights", shape)).exp_()
    # masks over the members are float 1.0 / 0.0 (a comparison of float operands writes them
    # without a casting copy); `flag` holds one comparison at a time
    flag = buffers("member_flag", shape)
    threshold = torch.full((rows, 1), float("-inf"), device=z.device)
    kept_mass = cumulative[:, -1:]
    if k is not None:
        k_edge_value = k_edge.float()
        # members are sorted, so their buckets never decrease: skip those above the edge, then count k
        offset = torch.searchsorted(member_buckets, k_edge_value)
        threshold = members.gather(1, (offset + k - 1 - higher).clamp_(0, members.shape[1] - 1))
        in_edge = torch.eq(member_buckets, k_edge_value, out=buffers("in_edge", shape))
        in_edge *= torch.ge(members, threshold, out=flag)
        edge_mass = torch.mul(member_weights, in_edge, out=buffers("member_mass", shape)).sum(-1, keepdim=True)
        kept_mass = _before(cumulative, k_edge) + edge_mass
    if nucleus:
        candidate = torch.ge(member_buckets, p_first.float(), out=buffers("candidate", shape))
        candidate *= torch.le(member_buckets, p_last.float(), out=flag)
        candidate *= torch.ge(members, threshold, out=flag)
        candidate_weights = torch.mul(member_weights, candidate, out=buffers("member_mass", shape))
        above = _mass_strictly_above(members, candidate_weights, buffers)
        above += _before(cumulative, p_first)
        kept = torch.lt(above, top_p * kept_mass, out=flag)
        kept *= candidate
        threshold = torch.maximum(threshold, _lowest_kept(members, kept))
    return threshold, weights


def filter_logits(logits: torch.Tensor, controls: SamplingControls) -> torch.Tensor:
    """Temperature, then top-k, then top-p (the order of the common samplers); dropped logits are -inf."""
    z = logits.float()
    if controls.temperature > 0:
        z = z / controls.temperature
    flat = z.reshape(-1, z.shape[-1])
    threshold, _ = keep_threshold(flat, controls.top_k, controls.top_p)
    return flat.masked_fill(flat < threshold, float("-inf")).view(z.shape)


@torch.no_grad()
def draw(logits: torch.Tensor, controls: SamplingControls, generator: torch.Generator | None = None,
         buffers: DrawBuffers | None = None) -> torch.Tensor:
    """Sample one token per row of logits (..., V) -> int64 (...).

    Inverse-CDF sampling over the kept tokens in vocabulary order: one uniform number
    per row, located in the running sum of their probabilities. A step consumes exactly
    one random number per (batch row, position), so two decoders that see the same
    logits with the same generator draw the same tokens. Greedy (temperature 0) consumes none.

    buffers: the scratch to reuse (a decoder passes the same one at every step, so the
    draw allocates nothing larger than one value per row); the tokens returned then live
    in it and are overwritten by the next draw. None: fresh scratch for this call.
    """
    buffers = buffers or DrawBuffers(logits.device)
    shape = logits.shape[:-1]
    if controls.temperature == 0:
        return torch.argmax(logits, dim=-1, out=buffers("tokens", tuple(shape), torch.long))
    z = buffers.float32("logits", logits)
    z = z.view(-1, z.shape[-1])
    if controls.temperature != 1.0:
        z = torch.div(z, controls.temperature, out=buffers("tempered", tuple(z.shape)))
    threshold, weights = keep_threshold(z, controls.top_k, controls.top_p, buffers)
    # a float mask from `ge` and a multiply: much cheaper on CPU than a bool mask
    weights *= torch.ge(z, threshold, out=buffers("scratch", tuple(z.shape)))
    uniform = torch.rand((z.shape[0], 1), generator=generator, out=buffers("uniform", (z.shape[0], 1)))
    return _inverse_cdf(weights, uniform, buffers).view(shape)


def _inverse_cdf(weights: torch.Tensor, uniform: torch.Tensor, buffers: DrawBuffers | None = None) -> torch.Tensor:
    """(R,) first index whose running sum of `weights` (R, V) exceeds `uniform` (R, 1) times the row's total.

    The index `searchsorted(cumsum(weights), uniform * total, right=True)` picks, without
    the running sum over the whole vocabulary: the sums of chunks of CHUNK tokens name the
    chunk, and the running sum (float64, rounded to float32 per entry, as CPU `cumsum`
    does) is taken inside that chunk only. The chunk sums are float32, so a draw that
    falls within float32 rounding of a token's boundary may pick the neighbour instead;
    the tokens are still drawn from the kept distribution. right=True picks the first index whose sum exceeds the draw, and the
    pick is held to the last token of positive weight, so a dropped token never is.
    """
    buffers = buffers or DrawBuffers(weights.device)
    rows, vocab = weights.shape
    size = min(CHUNK, vocab)
    whole = vocab // size
    chunks = whole + (whole * size < vocab)
    sums = buffers("chunk_sums", (rows, chunks))
    torch.sum(weights[:, : whole * size].unfold(1, size, size), -1, out=sums[:, :whole])
    if whole < chunks:
        torch.sum(weights[:, whole * size:], -1, keepdim=True, out=sums[:, whole:])
    # running sum at each chunk's end, in float64
    ends = buffers("chunk_ends", (rows, chunks), torch.float64).copy_(sums).cumsum_(1)
    ends32 = buffers("chunk_ends32", (rows, chunks)).copy_(ends)
    total = buffers("total", (rows, 1)).copy_(ends32[:, -1:])
    target = torch.mul(uniform, total, out=buffers("target", (rows, 1)))
    chunk = torch.searchsorted(ends32, target, right=True, out=buffers("chunk", (rows, 1), torch.long))
    # the last chunk with weight
    last_chunk = torch.searchsorted(ends32, total, out=buffers("last_chunk", (rows, 1), torch.long))
    torch.minimum(chunk, last_chunk, out=chunk)
    start = torch.where(chunk > 0, ends.gather(1, (chunk - 1).clamp_min(0)), 0.0)
    offsets = torch.arange(size, out=buffers("chunk_offsets", (size,), torch.long))
    position = torch.add(chunk * size, offsets, out=buffers("chunk_positions", (rows, size), torch.long))
    past_vocab = torch.ge(position, vocab, out=buffers("past_vocab", (rows, size), torch.bool))
    position.clamp_max_(vocab - 1)
    inside = torch.gather(weights, 1, position, out=buffers("chunk_weights", (rows, size)))
    inside = buffers("chunk_weights64", (rows, size), torch.float64).copy_(inside)
    inside.masked_fill_(past_vocab, 0.0)
    running64 = torch.cumsum(inside, dim=1, out=buffers("running64", (rows, size), torch.float64)).add_(start)
    running = buffers("running", (rows, size)).copy_(running64)
    last = buffers("running_last", (rows, 1)).copy_(running[:, -1:])
    offset = torch.searchsorted(running, target, right=True, out=buffers("offset", (rows, 1), torch.long))
    # the last token with weight
    last_offset = torch.searchsorted(running, last, out=buffers("last_offset", (rows, 1), torch.long))
    torch.minimum(offset, last_offset, out=offset)
    tokens = torch.add(chunk * size, offset, out=buffers("tokens", (rows, 1), torch.long))
    return tokens.view(rows)
