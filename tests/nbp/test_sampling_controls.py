import math

import pytest
import torch

from nbp.errors import UserError
from nbp.sampling_controls import SamplingControls, draw, filter_logits, guide, top_k_filter, top_p_filter


def test_top_p_keeps_smallest_set_reaching_p_hand_example():
    # probabilities 0.5, 0.3, 0.15, 0.05 (shuffled positions)
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3])
    logits = probs.log()
    # p = 0.8: 0.5 + 0.3 = 0.8 reaches p exactly -> {0.5, 0.3}
    kept = torch.isfinite(top_p_filter(logits, 0.8))
    assert kept.tolist() == [False, True, False, True]
    # p = 0.81: 0.5 + 0.3 < 0.81, add 0.15 -> {0.5, 0.3, 0.15}
    kept = torch.isfinite(top_p_filter(logits, 0.81))
    assert kept.tolist() == [True, True, False, True]
    # p = 0.4: the most likely token alone already reaches p
    kept = torch.isfinite(top_p_filter(logits, 0.4))
    assert kept.tolist() == [False, True, False, False]
    # kept logits are unchanged
    assert torch.equal(top_p_filter(logits, 0.81)[kept], logits[kept])
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_top_p_is_vectorised_over_rows():
    torch.manual_seed(1)
    logits = torch.randn(3, 16, 50)
    batched = top_p_filter(logits, 0.7)
    for i in range(3):
        for j in range(16):
            assert torch.equal(batched[i, j], top_p_filter(logits[i, j], 0.7))


def test_top_k_keeps_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    kept = torch.isfinite(top_k_filter(logits, 2))
    assert kept.tolist() == [[False, True, False, True, False]]
    assert torch.equal(top_k_filter(logits, None), logits)
    assert torch.equal(top_k_filter(logits, 10), logits)


def test_top_k_one_equals_greedy():
    torch.manual_seed(2)
    logits = torch.randn(4, 16, 100)
    gen = torch.Generator().manual_seed(0)
    sampled = draw(logits, SamplingControls(top_k=1, temperature=1.3), gen)
    greedy = draw(logits, SamplingControls(temperature=0.0))
    assert torch.equal(sampled, logits.argmax(-1)) and torch.equal(greedy, logits.argmax(-1))


def test_same_seed_same_draws_and_different_seed_differs():
    logits = torch.zeros(8, 16, 1000)
    a = draw(logits, SamplingControls(), torch.Generator().manual_seed(5))
    b = draw(logits, SamplingControls(), torch.Generator().manual_seed(5))
    c = draw(logits, SamplingControls(), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_draw_frequencies_follow_softmax_with_temperature():
    probs = torch.tensor([0.6, 0.25, 0.1, 0.05])
    temperature = 2.0
    logits = (probs.log() * temperature).expand(40000, 4)  # softmax(logits / T) = probs
    tokens = draw(logits, SamplingControls(temperature=temperature), torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=4).float() / tokens.numel()
    # 4 standard errors of a binomial proportion with n = 40000
    tol = 4 * torch.sqrt(probs * (1 - probs) / tokens.numel())
    assert torch.all((freq - probs).abs() < tol), (freq, probs)


def test_filtered_tokens_are_never_drawn():
    torch.manual_seed(3)
    logits = torch.randn(2000, 20)
    controls = SamplingControls(top_k=5, top_p=0.6)
    allowed = torch.isfinite(filter_logits(logits, controls))
    tokens = draw(logits, controls, torch.Generator().manual_seed(1))
    assert allowed.gather(1, tokens[:, None]).all()


def test_guidance_formula_and_unguided_scale():
    cond, uncond = torch.randn(2, 16, 30), torch.randn(2, 16, 30)
    assert torch.equal(guide(cond, uncond, 1.0), cond)  # scale 1 is unguided, bit for bit
    assert torch.allclose(guide(cond, uncond, 0.0), uncond, atol=1e-6)
    assert torch.allclose(guide(cond, uncond, 3.0), uncond + 3.0 * (cond - uncond), atol=1e-5)


def test_cfg_ramp_goes_linearly_from_one_to_scale():
    controls = SamplingControls(cfg_scale=3.0, cfg_ramp=True)
    scales = [controls.scale_at(i, 5) for i in range(5)]
    assert scales == pytest.approx([1.0, 1.5, 2.0, 2.5, 3.0])
    assert SamplingControls(cfg_scale=3.0).scale_at(0, 5) == 3.0
    assert not SamplingControls(cfg_scale=1.0).guided and SamplingControls(cfg_scale=1.5).guided
    assert SamplingControls(cfg_scale=1.0, cfg_ramp=True).guided


@pytest.mark.parametrize("field,value", [("temperature", -1.0), ("top_k", -2), ("top_p", 0.0), ("top_p", 1.5),
                                         ("cfg_scale", -0.5), ("temperature", math.nan)])
def test_bad_controls_fail_naming_the_field(field, value):
    with pytest.raises(UserError, match=field):
        SamplingControls(**{field: value})
