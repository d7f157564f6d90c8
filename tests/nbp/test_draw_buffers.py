"""The block draw reuses its scratch: nothing but (rows, 1) values is allocated per decode step.

Allocation is read from torch.profiler (profile_memory=True): every op's own allocation
that it did not free itself, summed over the ops inside the sampler's per-step sampling
range. A draw with fresh scratch at every step is profiled the same way, so the
measurement is shown to see the allocations it is meant to catch.
"""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from nbp.draw_buffers import DrawBuffers
from nbp.sampler import SAMPLE_BLOCK
from nbp.sampling import generate
from nbp.sampling_controls import SamplingControls, draw, guide
from tests.nbp.test_model import make

VOCAB = 4096
BYTES_PER_ROW = 1024  # the allowance per drawn row: a few dozen (rows, 1) values of 8 bytes
# the buffers the issue names (logits cast aside: float32 logits are read in place), sized by rows and vocabulary
FIXED = ["guided", "weights", "scratch", "buckets", "mass", "counts", "cumulative", "chunk_sums",
         "uniform", "tokens"]


def decode_model():
    return make(vocab_size=VOCAB, block=(1, 1, 4), first_block="hybrid", condition="class", arch="modern")


def allocated_per_step(prof) -> list[int]:
    """Bytes allocated by the ops inside each per-step sampling range of a profile."""
    def inside_step(event):
        while event is not None:
            if event.name == SAMPLE_BLOCK:
                return event
            event = event.cpu_parent
        return None

    per_step: dict[int, int] = {}
    for event in prof.events():
        step = inside_step(event)
        if step is not None:
            per_step.setdefault(id(step), 0)
            per_step[id(step)] += max(event.self_cpu_memory_usage, 0)
    return list(per_step.values())


@pytest.mark.parametrize("top_k", [VOCAB // 4, 20], ids=["histogram", "small-k"])
def test_decode_steps_allocate_nothing_in_the_sampling_beyond_a_few_values_per_row(top_k, monkeypatch):
    model = decode_model()
    cond = [0, 1, 2, 1]
    kw = dict(seed=5, top_k=top_k, top_p=0.9, temperature=0.9, cfg_scale=2.0)
    expected = generate(model, cond=cond, **kw)  # sizes the buffers: the profiled call draws the same tokens
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        tokens = generate(model, cond=cond, **kw)
    assert torch.equal(tokens, expected)
    steps = allocated_per_step(prof)
    rows = len(cond) * model.config.layout.block_len  # rows of a whole-block draw
    assert len(steps) == model.config.decode_steps
    assert max(steps) <= BYTES_PER_ROW * rows, steps

    # the same steps with fresh scratch at every draw: the profile does see the (rows, vocab) tensors
    fresh_draw = draw
    monkeypatch.setattr("nbp.sampler.draw",
                        lambda logits, controls, generator, buffers: fresh_draw(logits, controls, generator))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        assert torch.equal(generate(model, cond=cond, **kw), expected)
    assert max(allocated_per_step(prof)) > 3 * rows * VOCAB * 4


def test_the_draw_buffers_keep_their_addresses_across_steps_calls_and_a_smaller_batch():
    model = decode_model()
    kw = dict(top_k=VOCAB // 4, top_p=0.9, cfg_scale=2.0)
    generate(model, cond=[0, 1, 2], seed=0, **kw)
    buffers = model.draw_buffers
    first = buffers.addresses()
    assert set(FIXED) <= set(first)
    sizes = {name: held.numel() for name, held in buffers._held.items()}
    generate(model, cond=[2, 0, 1], seed=1, **kw)
    generate(model, cond=[1], seed=2, **kw)  # the smaller last batch reads the front of the same buffers
    assert model.draw_buffers is buffers
    later = buffers.addresses()
    assert {name: later[name] for name in FIXED} == {name: first[name] for name in FIXED}
    # a buffer sized by the tokens of a boundary bucket moves only when a later draw needs more of them
    moved = [name for name in first if later[name] != first[name]]
    assert all(buffers._held[name].numel() > sizes[name] for name in moved)


CASES = [  # (rows, vocab, top_k, top_p, temperature, guidance scale); small-k, histogram, ties, greedy
    (16, 3000, 20, 0.9, 1.0, 1.0), (48, 3000, 750, 0.9, 0.7, 2.0), (5, 1100, None, 0.5, 1.3, 1.0),
    (48, 700, 699, 0.999, 1.0, 3.0), (8, 5000, 1000, None, 1.0, 1.0), (16, 3000, None, None, 0.0, 1.5),
]


def test_reused_buffers_draw_what_fresh_ones_draw_whatever_came_before():
    buffers = DrawBuffers()
    generator = torch.Generator().manual_seed(0)
    for repeat in range(2):
        for index, (rows, vocab, k, p, temperature, scale) in enumerate(CASES):
            cond = torch.randn(rows, vocab, generator=generator) * 2
            if index == 3:
                cond = cond.round()  # many tied logits
            uncond = torch.randn(rows, vocab, generator=generator)
            controls = SamplingControls(temperature=temperature, top_k=k, top_p=p)
            seed = 10 * repeat + index
            want = draw(guide(cond, uncond, scale), controls, torch.Generator().manual_seed(seed))
            got = draw(guide(cond, uncond, scale, buffers), controls, torch.Generator().manual_seed(seed), buffers)
            assert torch.equal(got, want), (repeat, index)


def test_guidance_into_a_buffer_is_the_formula_bit_for_bit():
    cond, uncond = torch.randn(4, 16, 300), torch.randn(4, 16, 300)
    buffers = DrawBuffers()
    for scale in (0.0, 2.0, 7.5):
        assert torch.equal(guide(cond, uncond, scale, buffers), cond + (scale - 1.0) * (cond - uncond))
    assert guide(cond, uncond, 1.0, buffers) is cond


@pytest.mark.gpu
def test_on_cuda_a_draw_with_reused_buffers_allocates_only_small_values():
    """The CUDA caching allocator counts every allocation (at least 512 bytes each)."""
    rows, vocab = 16, 64000
    logits = torch.randn(rows, vocab, device="cuda", generator=torch.Generator("cuda").manual_seed(0)) * 2
    controls = SamplingControls(top_k=16000, top_p=0.9)
    buffers = DrawBuffers("cuda")

    def allocated_by(fn):
        torch.cuda.synchronize()
        before = torch.cuda.memory_stats()["allocated_bytes.all.allocated"]
        result = fn()
        torch.cuda.synchronize()
        return torch.cuda.memory_stats()["allocated_bytes.all.allocated"] - before, result

    fresh_bytes, want = allocated_by(lambda: draw(logits, controls, torch.Generator("cuda").manual_seed(1)))
    draw(logits, controls, torch.Generator("cuda").manual_seed(1), buffers)  # sizes the buffers
    reused_bytes, got = allocated_by(lambda: draw(logits, controls, torch.Generator("cuda").manual_seed(1), buffers))
    assert torch.equal(got, want)
    assert fresh_bytes > 3 * rows * vocab * 4
    assert reused_bytes <= 128 * 512  # fewer than 128 (rows, 1) values, each one allocator block
