"""Rolling generation (nbp.rolling) on tiny random transformers: the model's own length gives exactly
the sampler's tokens, longer videos slide a window whose cached decoding equals recomputing it."""

import pytest
import torch

from nbp.config import NBPConfig
from nbp.errors import UserError
from nbp.model import NBPTransformer
from nbp.rolling import iter_latent_frames, latent_frames_for
from nbp.sampler import sample_sequence
from nbp.sampling_controls import SamplingControls
from tests.nbp.conditions import condition_for

SAMPLED = SamplingControls(temperature=1.0, top_k=20, top_p=0.95)
GUIDED = SamplingControls(temperature=1.0, cfg_scale=2.0)
GREEDY = SamplingControls(temperature=0.0)

LAYOUTS = {
    "rows": dict(grid=(4, 2, 4), block=(1, 1, 4)),
    "2d_hybrid": dict(grid=(4, 2, 4), block=(1, 2, 2), first_block="hybrid"),
    "frame_hybrid": dict(grid=(4, 2, 4), block=(1, 1, 4), first_block="hybrid", hybrid_blocks=2),
}
CONDITIONS = {
    "class": dict(condition="class", num_classes=3),
    "class_everywhere": dict(condition="class", num_classes=3, class_every_position=True),
    "none": dict(condition="none"),
    "frames": dict(condition="frames", context_frames=2),
}


def tiny_model(layout="rows", condition="class", window=True, **overrides) -> NBPTransformer:
    torch.manual_seed(0)
    spec = {**LAYOUTS[layout], **CONDITIONS[condition], **overrides}
    config = NBPConfig(vocab_size=23, n_layer=2, n_head=2, n_embd=32, dropout=0.0,
                       window=spec["grid"][0] if window else 0, **spec)
    model = NBPTransformer(config).eval()
    if window:  # a freshly initialised flag is small; make it matter as much as a trained one
        torch.nn.init.normal_(model.clip_start_emb.weight, std=1.0)
    return model


def roll(model, cond, latent_frames=None, controls=SAMPLED, seed=0, batch=2, **kw) -> torch.Tensor:
    frames = iter_latent_frames(model, cond, latent_frames, batch, controls=controls,
                                generator=torch.Generator().manual_seed(seed), **kw)
    return torch.stack(list(frames), dim=1)


def with_controls(cases):
    """Every (layout, condition) case sampled plain and guided, but guided only where there is a condition."""
    return [pytest.param(*case, controls, id=f"{'-'.join(case)}-{name}") for case in cases
            for name, controls in (("sampled", SAMPLED), ("guided", GUIDED))
            if name == "sampled" or case[1] != "none"]


@pytest.mark.parametrize("window", [False, True], ids=["whole_clips", "window"])
@pytest.mark.parametrize("layout,condition,controls", with_controls(
    [("rows", "class"), ("2d_hybrid", "none"), ("frame_hybrid", "frames"), ("rows", "class_everywhere")]))
def test_the_models_own_length_gives_exactly_the_samplers_tokens(layout, condition, window, controls):
    model = tiny_model(layout, condition, window)
    cond = condition_for(model)
    seq, _ = sample_sequence(model, cond, 2, controls, torch.Generator().manual_seed(3))
    expected = model.config.layout.seq_to_grid(seq)
    if model.config.condition == "frames":
        expected = torch.cat([model.config.context_layout.seq_to_grid(cond), expected], dim=1)
    assert torch.equal(roll(model, cond, controls=controls, seed=3), expected)


def test_a_model_of_one_latent_frame_yields_it():
    model = tiny_model("rows", "class", window=False, grid=(1, 2, 4))
    seq, _ = sample_sequence(model, condition_for(model), 2, SAMPLED, torch.Generator().manual_seed(0))
    assert torch.equal(roll(model, condition_for(model)), model.config.layout.seq_to_grid(seq))


def test_frames_complete_in_order_as_soon_as_their_last_block_is_sampled():
    model = tiny_model("rows", "class")
    cond = condition_for(model)
    calls = []
    original = model.step

    def counting_step(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    model.step = counting_step
    blocks_per_frame = 2  # a 2x4 latent frame in rows of 4
    for t, frame in enumerate(iter_latent_frames(model, cond, 4, 2, controls=SAMPLED)):
        assert frame.shape == (2, 2, 4)
        # frame t needs its blocks only: (t + 1) * blocks_per_frame draws, the first from the prefill
        assert len(calls) == (t + 1) * blocks_per_frame - 1


@pytest.mark.parametrize("layout,condition,controls", with_controls(
    [("rows", "class"), ("2d_hybrid", "none"), ("frame_hybrid", "frames"), ("rows", "class_everywhere"),
     ("frame_hybrid", "class")]))
def test_rolling_with_the_cache_equals_recomputing_every_window(layout, condition, controls):
    model = tiny_model(layout, condition)
    cond = condition_for(model)
    cached = roll(model, cond, 9, controls)
    assert cached.shape == (2, 9, 2, 4)
    assert torch.equal(cached, roll(model, cond, 9, controls, decoder="recompute"))


@pytest.mark.parametrize("condition", ["class", "none", "frames"])
def test_a_longer_video_starts_with_the_shorter_one(condition):
    model = tiny_model("rows", condition)
    cond = condition_for(model)
    long = roll(model, cond, 10)
    assert torch.equal(long[:, :4], roll(model, cond, 4))
    assert torch.equal(long[:, :3], roll(model, cond, 3))  # shorter than the model: stops early


@pytest.mark.parametrize("condition", ["class", "frames"])
def test_every_shifted_window_is_what_the_training_forward_predicts_mid_clip(condition):
    """Greedy decoding: each new latent frame is the argmax of the training forward over its window,
    with the window's own prefix and the mid-clip flag (and not that of the clip-start flag)."""
    model = tiny_model("rows", condition)
    config = model.config
    cond = condition_for(model)
    video = roll(model, cond, 8, GREEDY)
    T, c, hw = config.grid[0], config.context_frames, config.grid[1] * config.grid[2]
    flag_mattered = False
    for t in range(T, 8):
        window = video[:, t - T + 1: t + 1]
        window_cond = config.context_layout.grid_to_seq(window[:, :c]) if c else cond
        target = config.layout.grid_to_seq(window[:, c:])
        for start, check in ((False, True), (True, False)):
            logits = model(target, window_cond, clip_start=torch.full((2,), start))
            predicted = logits[:, -hw:].argmax(-1)
            if check:
                assert torch.equal(predicted, target[:, -hw:])
            else:
                flag_mattered |= not torch.equal(predicted, target[:, -hw:])
    assert flag_mattered


def test_the_clip_start_flag_changes_the_logits_and_defaults_to_the_clip_start():
    model = tiny_model("rows", "class")
    video = torch.randint(0, 23, (2, model.config.num_tokens))
    cond = condition_for(model)
    default = model(video, cond)
    assert torch.equal(default, model(video, cond, clip_start=torch.tensor([True, True])))
    mid = model(video, cond, clip_start=torch.tensor([False, True]))
    assert not torch.allclose(default[0], mid[0]) and torch.equal(default[1], mid[1])


def test_latent_frames_for_pixel_frames():
    assert [latent_frames_for(n, 4) for n in (1, 17, 33, 65)] == [1, 5, 9, 17]
    for bad in (0, 16, 18, -3):
        with pytest.raises(UserError, match="1 \\+ 4k"):
            latent_frames_for(bad, 4)


def test_lengths_a_model_cannot_generate_are_one_clear_error():
    plain = tiny_model("rows", "class", window=False)
    with pytest.raises(UserError, match="whole clips of 4 latent frames"):
        next(iter_latent_frames(plain, condition_for(plain), 5, 2))
    frames = tiny_model("rows", "frames")
    with pytest.raises(UserError, match="nothing to generate"):
        next(iter_latent_frames(frames, condition_for(frames), 2, 2))
    thick = tiny_model("rows", "class", window=False, block=(2, 1, 4))
    with pytest.raises(UserError, match="span 2 latent frames"):
        next(iter_latent_frames(thick, condition_for(thick), 3, 2))


@pytest.mark.parametrize("overrides,field", [
    (dict(window=3), "window"),  # not the grid's T'
    (dict(window=4, condition="frames", context_frames=3), "window"),  # no room for a known frame
    (dict(window=4, block=(2, 1, 4)), "block"),
    (dict(window=4, first_block="hybrid", hybrid_blocks=3), "hybrid_blocks"),
    (dict(window=-1), "window"),
])
def test_window_config_validation_names_the_field(overrides, field):
    spec = {**dict(vocab_size=23, grid=(4, 2, 4), block=(1, 1, 4), n_layer=1, n_head=1, n_embd=8), **overrides}
    with pytest.raises(UserError, match=f"NBPConfig.{field}="):
        NBPConfig(**spec)
