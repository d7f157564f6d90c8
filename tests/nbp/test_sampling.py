"""The decoding loop against independent references, on tiny random transformers (fp32, CPU)."""

import pytest
import torch

from nbp.config import NBPConfig
from nbp.errors import UserError
from nbp.model import NBPTransformer
from nbp.sampler import CachedDecoder, decode_segments, sample_sequence
from nbp.sampling import generate
from nbp.sampling_controls import SamplingControls, draw
from tests.nbp.conditions import condition_for


GREEDY, SAMPLED = SamplingControls(temperature=0.0), SamplingControls(temperature=1.0, top_k=20, top_p=0.95)

LAYOUTS = {
    "rows": dict(grid=(3, 4, 4), block=(1, 1, 4), first_block="start_block"),
    "2d": dict(grid=(3, 4, 4), block=(1, 2, 2), first_block="start_block"),
    "hybrid_rows": dict(grid=(3, 4, 4), block=(1, 1, 4), first_block="hybrid"),
    "3d_hybrid": dict(grid=(4, 4, 4), block=(2, 2, 2), first_block="hybrid"),
    "frame_hybrid": dict(grid=(3, 4, 4), block=(1, 1, 4), first_block="hybrid", hybrid_blocks=4),  # frame 0 NTP
}
CONDITIONS = {
    "class": dict(condition="class", num_classes=3),
    "none": dict(condition="none"),
    "frames": dict(condition="frames", context_frames=2),
}


def tiny_model(layout="rows", condition="class", **overrides) -> NBPTransformer:
    torch.manual_seed(0)
    config = NBPConfig(vocab_size=40, n_layer=2, n_head=2, n_embd=32, dropout=0.0,
                       **{**LAYOUTS[layout], **CONDITIONS[condition], **overrides})
    return NBPTransformer(config).eval()


def run(model, cond, controls, seed=0, batch=2, **kw):
    return sample_sequence(model, cond, batch, controls, torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("layout,condition", [("rows", "class"), ("2d", "frames"), ("hybrid_rows", "frames"),
                                              ("3d_hybrid", "none"), ("frame_hybrid", "class")])
@pytest.mark.parametrize("controls", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_cached_decoding_equals_recomputing_the_whole_sequence(layout, condition, controls):
    model = tiny_model(layout, condition)
    cond = condition_for(model)
    cached, _ = run(model, cond, controls)
    recomputed, _ = run(model, cond, controls, decoder="recompute")
    assert torch.equal(cached, recomputed)


@pytest.mark.parametrize("class_every_position", [False, True])
def test_cached_guided_decoding_equals_recompute(class_every_position):
    model = tiny_model("hybrid_rows", "class", class_every_position=class_every_position)
    controls = SamplingControls(cfg_scale=3.0, cfg_ramp=True, top_k=10)
    cond = condition_for(model)
    assert torch.equal(run(model, cond, controls)[0], run(model, cond, controls, decoder="recompute")[0])


@pytest.mark.parametrize("layout,condition", [("2d", "frames"), ("hybrid_rows", "frames"), ("3d_hybrid", "class"),
                                              ("frame_hybrid", "frames")])
def test_every_step_logits_equal_teacher_forced_training_logits(layout, condition):
    model = tiny_model(layout, condition)
    config = model.config
    cond = condition_for(model)
    video = torch.randint(0, config.vocab_size, (2, config.num_tokens), generator=torch.Generator().manual_seed(3))
    reference = model(video, cond)
    decoder = CachedDecoder(model, 2, device="cpu")
    segments = decode_segments(config.layout, config.token_by_token)
    logits = decoder.start(cond, video, segments[0])
    for index, (a, b) in enumerate(segments):
        torch.testing.assert_close(logits, reference[:, a:b], rtol=0, atol=1e-5)
        if index + 1 < len(segments):
            logits = decoder.feed(video, (a, b), segments[index + 1])


def plain_next_token_sampling(model, cond, controls, generator):
    """Independent reference: one token at a time, full forward every time."""
    seq = torch.zeros(cond.shape[0], model.config.num_tokens, dtype=torch.long)
    for i in range(model.config.num_tokens):
        logits = model(seq, cond)[:, i:i + 1]
        seq[:, i:i + 1] = draw(logits, controls, generator)
    return seq


@pytest.mark.parametrize("first_block", ["start_block", "hybrid"])
def test_block_1x1x1_is_plain_next_token_sampling(first_block):
    model = tiny_model("rows", "class", block=(1, 1, 1), first_block=first_block, grid=(2, 3, 3))
    cond = condition_for(model, batch=3)
    ntp = plain_next_token_sampling(model, cond, SAMPLED, torch.Generator().manual_seed(4))
    nbp, stats = run(model, cond, SAMPLED, seed=4, batch=3)
    assert torch.equal(nbp, ntp) and stats.model_calls == 18


def test_top_k_one_is_greedy_through_the_loop():
    model = tiny_model("hybrid_rows", "class")
    cond = condition_for(model)
    assert torch.equal(run(model, cond, SamplingControls(top_k=1, temperature=2.0), seed=1)[0],
                       run(model, cond, GREEDY)[0])


def test_guidance_at_unguided_scale_equals_unguided_and_scale_matters():
    model = tiny_model("hybrid_rows", "class")
    cond = condition_for(model, batch=3)
    unguided, _ = run(model, cond, SAMPLED, batch=3)
    # a ramp to scale 1 runs the doubled batch with the null class at every step
    ramp_to_one = SamplingControls(temperature=1.0, top_k=20, top_p=0.95, cfg_scale=1.0, cfg_ramp=True)
    assert ramp_to_one.guided
    assert torch.equal(run(model, cond, ramp_to_one, batch=3)[0], unguided)
    strong = SamplingControls(temperature=0.0, cfg_scale=8.0)
    assert not torch.equal(run(model, cond, strong, batch=3)[0], run(model, cond, GREEDY, batch=3)[0])


def test_guidance_at_scale_zero_samples_the_null_condition():
    model = tiny_model("rows", "class")
    cond = condition_for(model, batch=2)
    null = model.null_condition(cond)
    zero = SamplingControls(temperature=1.0, cfg_scale=0.0)
    assert torch.equal(run(model, cond, zero)[0], run(model, null, SamplingControls())[0])


@pytest.mark.parametrize("layout,expected", [("rows", 12), ("2d", 12), ("hybrid_rows", 4 + 12 - 1),
                                             ("3d_hybrid", 8 + 8 - 1), ("frame_hybrid", 16 + 12 - 4)])
def test_model_calls_equal_blocks_plus_hybrid_tokens(layout, expected):
    model = tiny_model(layout, "class")
    calls = {"prefill": 0, "step": 0}
    prefill, step = model.prefill, model.step

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    model.prefill, model.step = counting("prefill", prefill), counting("step", step)
    _, stats = run(model, condition_for(model), SAMPLED)
    assert calls["prefill"] == 1 and 1 + calls["step"] == expected == stats.model_calls
    assert model.config.decode_steps == expected


def test_generate_same_seed_same_tokens_any_batch_size():
    model = tiny_model("hybrid_rows", "class")
    a = generate(model, cond=[0, 2, 1], seed=11, top_p=0.9)
    b = generate(model, cond=[0, 2, 1], seed=11, top_p=0.9)
    c = generate(model, cond=[0, 2, 1], seed=12, top_p=0.9)
    assert a.shape == (3, 3, 4, 4) and torch.equal(a, b) and not torch.equal(a, c)
    assert generate(model, cond=1, num=5, seed=0).shape == (5, 3, 4, 4)


def test_generate_frames_keeps_the_context_in_front():
    model = tiny_model("rows", "frames")
    context = torch.randint(0, 40, (2, 2, 4, 4))
    grid = generate(model, cond=context, seed=0)
    assert grid.shape == (2, 3, 4, 4) and torch.equal(grid[:, :2], context)


def test_generate_unconditional_takes_num():
    model = tiny_model("2d", "none")
    assert generate(model, num=3, seed=0).shape == (3, 3, 4, 4)


def test_user_mistakes_are_one_line_errors():
    with pytest.raises(UserError, match="condition='none'"):
        generate(tiny_model("2d", "none"), num=2, cfg_scale=2.0)
    with pytest.raises(UserError, match="out of range"):
        generate(tiny_model("rows", "class"), cond=[5])
    with pytest.raises(UserError, match="class ids"):
        generate(tiny_model("rows", "class"))


@pytest.mark.gpu
def test_compiled_decoding_on_cuda_gives_the_eager_tokens():
    model = tiny_model("hybrid_rows", "class").cuda()
    cond = torch.tensor([0, 2, 1], device="cuda")
    eager = generate(model, cond=cond, seed=5, top_k=20)
    compiled = generate(model, cond=cond, seed=5, top_k=20, compile=True)
    again = generate(model, cond=cond, seed=5, top_k=20, compile=True)  # replays the captured graphs
    assert torch.equal(eager, compiled) and torch.equal(eager, again)
