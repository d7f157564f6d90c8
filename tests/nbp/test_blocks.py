"""BlockLayout: block-major ordering against an explicit loop construction, inverse permutations, errors."""

import itertools

import pytest
import torch

from nbp.blocks import BlockLayout
from nbp.errors import UserError

SHAPES = [
    ((5, 16, 16), (1, 1, 16)),  # the paper's rows
    ((3, 4, 4), (1, 1, 1)),  # next-token prediction
    ((2, 8, 8), (1, 4, 4)),  # 2D blocks
    ((3, 4, 6), (1, 4, 6)),  # whole frames
    ((4, 4, 8), (2, 4, 4)),  # 3D blocks across frames
    ((4, 6, 6), (2, 3, 2)),  # odd sizes
]


def loop_order(grid, block):
    """Raster index of each sequence position, built with plain loops: blocks in raster order, then tokens."""
    T, H, W = grid
    bt, bh, bw = block
    order = []
    for t0, h0, w0 in itertools.product(range(0, T, bt), range(0, H, bh), range(0, W, bw)):
        for dt, dh, dw in itertools.product(range(bt), range(bh), range(bw)):
            order.append(((t0 + dt) * H + (h0 + dh)) * W + (w0 + dw))
    return order


@pytest.mark.parametrize("grid,block", SHAPES)
def test_order_matches_loop_construction(grid, block):
    layout = BlockLayout(grid, block)
    assert layout.seq_to_flat.tolist() == loop_order(grid, block)
    assert layout.num_tokens == len(loop_order(grid, block))
    assert layout.num_blocks * layout.block_len == layout.num_tokens


@pytest.mark.parametrize("grid,block", SHAPES)
def test_permutations_are_inverse(grid, block):
    layout = BlockLayout(grid, block)
    n = layout.num_tokens
    assert torch.equal(layout.seq_to_flat[layout.flat_to_seq], torch.arange(n))
    assert torch.equal(layout.flat_to_seq[layout.seq_to_flat], torch.arange(n))
    ids = torch.randint(0, 1000, (3, *grid))
    seq = layout.grid_to_seq(ids)
    assert seq.shape == (3, n)
    assert torch.equal(layout.seq_to_grid(seq), ids)
    other = torch.randint(0, 1000, (2, n))
    assert torch.equal(layout.grid_to_seq(layout.seq_to_grid(other)), other)


def test_blocks_hold_the_right_tokens():
    layout = BlockLayout((2, 4, 4), (1, 2, 2))
    grid = torch.arange(32).view(1, 2, 4, 4)
    seq = layout.grid_to_seq(grid)[0]
    assert seq[:4].tolist() == [0, 1, 4, 5]  # top-left 2x2 patch of frame 0
    assert seq[4:8].tolist() == [2, 3, 6, 7]  # the patch to its right
    assert seq[16:20].tolist() == [16, 17, 20, 21]  # first patch of frame 1


def test_rows_and_whole_frames_are_raster_order():
    for block in [(1, 1, 8), (1, 4, 8), (1, 1, 1)]:
        layout = BlockLayout((3, 4, 8), block)
        assert torch.equal(layout.seq_to_flat, torch.arange(96))


def test_coords_follow_the_sequence():
    layout = BlockLayout((4, 4, 8), (2, 4, 4))
    grid_t = torch.arange(4).view(4, 1, 1).expand(4, 4, 8)[None]
    grid_h = torch.arange(4).view(1, 4, 1).expand(4, 4, 8)[None]
    grid_w = torch.arange(8).view(1, 1, 8).expand(4, 4, 8)[None]
    expected = torch.stack([layout.grid_to_seq(g)[0] for g in (grid_t, grid_h, grid_w)], dim=1)
    assert torch.equal(layout.coords, expected)


@pytest.mark.parametrize("grid,block", [((5, 16, 16), (1, 1, 5)), ((5, 16, 16), (2, 1, 16)), ((5, 16, 16), (1, 0, 16))])
def test_block_that_does_not_tile_is_a_user_error(grid, block):
    with pytest.raises(UserError, match="block"):
        BlockLayout(grid, block)


def test_wrong_shapes_are_rejected():
    layout = BlockLayout((2, 4, 4), (1, 2, 2))
    with pytest.raises(ValueError):
        layout.grid_to_seq(torch.zeros(1, 2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError):
        layout.seq_to_grid(torch.zeros(1, 31, dtype=torch.long))


def test_config_layouts_are_built_once_and_follow_field_changes():
    from nbp.config import NBPConfig

    cfg = NBPConfig(vocab_size=16, grid=(3, 4, 4), block=(1, 1, 4), condition="frames", context_frames=1,
                    n_layer=1, n_head=2, n_embd=16)
    assert cfg.layout is cfg.layout and cfg.mask_spec is cfg.mask_spec and cfg.context_layout is cfg.context_layout
    assert cfg.layout.grid == (2, 4, 4) and cfg.mask_spec.block_len == 4
    cfg.block = (1, 2, 4)  # a changed field gives new derived values, not stale ones
    assert cfg.layout.block == (1, 2, 4) and cfg.mask_spec.block_len == 8 and cfg.context_layout.block == (1, 2, 4)


def test_permutations_are_copied_to_a_device_once():
    layout = BlockLayout((2, 4, 4), (1, 2, 2))
    ids = torch.arange(2 * 32).view(2, 2, 4, 4)
    seq = layout.grid_to_seq(ids)
    first = layout._permutation("seq_to_flat", ids.device)
    layout.grid_to_seq(ids)
    assert layout._permutation("seq_to_flat", ids.device) is first
    assert torch.equal(layout.seq_to_grid(seq), ids)
