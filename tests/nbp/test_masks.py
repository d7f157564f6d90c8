"""Block-causal masks against a brute-force construction over token pairs, and their caching."""

import pytest
import torch

from nbp.attention import flex_mask_mod
from nbp.blocks import BlockLayout
from nbp.masks import MaskSpec, block_causal_mask, group_boundaries


def describe(position, prefix_len, block_len, start_len):
    """(segment, block index, index inside the block) of a sequence position, by plain arithmetic."""
    if position < prefix_len:
        return "prefix", -1, position
    rel = position - prefix_len
    if rel < start_len:
        return "start", -1, rel
    return "video", (rel - start_len) // block_len, (rel - start_len) % block_len


def brute_force_mask(prefix_len, layout, first_block, hybrid_blocks=1):
    """The rules of the method written out for every (query, key) pair."""
    L = layout.block_len
    n = prefix_len + layout.num_tokens  # the start block stands in for the blocks it generates
    mask = torch.zeros(n, n, dtype=torch.bool)
    for q in range(n):
        q_seg, q_block, q_idx = describe(q, prefix_len, L, hybrid_blocks * L)
        for k in range(n):
            k_seg, k_block, k_idx = describe(k, prefix_len, L, hybrid_blocks * L)
            if k_seg == "prefix":
                allowed = True  # everyone sees the condition
            elif q_seg == "prefix":
                allowed = False  # the condition sees only itself
            elif k_seg == "start" and q_seg == "start":
                allowed = first_block == "start_block" or k_idx <= q_idx
            elif k_seg == "start":
                allowed = True  # video blocks see the whole start block
            elif q_seg == "start":
                allowed = False  # the start block never sees video blocks
            else:
                allowed = k_block <= q_block
            mask[q, k] = allowed
    return mask


LAYOUTS = [
    BlockLayout((3, 1, 4), (1, 1, 4)),  # rows
    BlockLayout((2, 4, 4), (1, 2, 2)),  # 2D blocks
    BlockLayout((4, 2, 4), (2, 2, 2)),  # 3D blocks
    BlockLayout((2, 2, 3), (1, 1, 1)),  # next-token prediction
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: "x".join(map(str, l.block)))
@pytest.mark.parametrize("prefix_len", [0, 1, 5])
@pytest.mark.parametrize("first_block", ["start_block", "hybrid"])
def test_mask_equals_brute_force(layout, prefix_len, first_block):
    spec = MaskSpec(prefix_len, layout.block_len, layout.num_blocks, first_block)
    mask = block_causal_mask(spec)
    assert mask.dtype == torch.bool and mask.shape == (spec.seq_len, spec.seq_len)
    assert torch.equal(mask, brute_force_mask(prefix_len, layout, first_block))


@pytest.mark.parametrize("layout", LAYOUTS[:3], ids=lambda l: "x".join(map(str, l.block)))
@pytest.mark.parametrize("hybrid_blocks", [2, 3])
def test_longer_hybrid_start_equals_brute_force(layout, hybrid_blocks):
    spec = MaskSpec(1, layout.block_len, layout.num_blocks, "hybrid", hybrid_blocks)
    assert spec.start_len == hybrid_blocks * layout.block_len
    assert torch.equal(block_causal_mask(spec), brute_force_mask(1, layout, "hybrid", hybrid_blocks))


def test_block_of_one_is_plain_causal():
    for first_block in ["start_block", "hybrid"]:
        mask = block_causal_mask(MaskSpec(0, 1, 7, first_block))
        assert torch.equal(mask, torch.ones(7, 7, dtype=torch.bool).tril())


def test_mask_is_built_once_per_shape():
    spec = MaskSpec(2, 4, 3, "hybrid")
    assert block_causal_mask(spec) is block_causal_mask(MaskSpec(2, 4, 3, "hybrid"))
    assert block_causal_mask(spec) is not block_causal_mask(MaskSpec(2, 4, 3, "start_block"))


def test_group_boundaries_are_decode_steps():
    # hybrid: prefix, then bos and the first block token by token, then whole blocks
    assert group_boundaries(MaskSpec(2, 3, 3, "hybrid")) == [0, 2, 3, 4, 5, 8, 11]
    assert group_boundaries(MaskSpec(1, 3, 3, "start_block")) == [0, 1, 4, 7, 10]
    assert group_boundaries(MaskSpec(0, 2, 2, "start_block")) == [0, 2, 4]
    # two blocks token by token: 6 single positions, then the 1 remaining video input block
    assert group_boundaries(MaskSpec(2, 3, 3, "hybrid", 2)) == [0, 2, 3, 4, 5, 6, 7, 8, 11]


@pytest.mark.parametrize("first_block", ["start_block", "hybrid"])
def test_flex_mask_mod_equals_dense_mask(first_block):
    # the FlexAttention mask function, evaluated on index grids on the CPU
    spec = MaskSpec(3, 4, 4, first_block)
    idx = torch.arange(spec.seq_len)
    from_mod = flex_mask_mod(spec)(0, 0, idx[:, None], idx[None, :])
    assert torch.equal(from_mod, block_causal_mask(spec))


def test_invalid_spec():
    with pytest.raises(ValueError):
        MaskSpec(0, 4, 3, "sideways")
    with pytest.raises(ValueError):
        MaskSpec(-1, 4, 3)
    with pytest.raises(ValueError, match="hybrid_blocks"):
        MaskSpec(0, 4, 3, "start_block", 2)
    with pytest.raises(ValueError, match="hybrid_blocks"):
        MaskSpec(0, 4, 3, "hybrid", 4)
