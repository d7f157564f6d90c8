import math

import pytest
import torch

from nbp.errors import UserError
from nbp.sampling_controls import SamplingControls, _inverse_cdf, draw, filter_logits, guide


def top_p_filter(logits, p):
    return filter_logits(logits, SamplingControls(top_p=p))


def top_k_filter(logits, k):
    return filter_logits(logits, SamplingControls(top_k=k))


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


def kept_by_definition(logits: torch.Tensor, k, p) -> torch.Tensor:
    """The filters as defined, by brute force in float64: top-k keeps every logit >= the k-th largest;
    top-p then keeps a token when the probability of the tokens with a strictly larger logit is below p."""
    z = logits.double()
    keep = torch.ones_like(z, dtype=torch.bool)
    if k and k < z.shape[-1]:
        keep = z >= z.sort(dim=-1, descending=True).values[..., k - 1:k]
    if p is not None and p < 1.0:
        w = torch.exp(z - z.amax(-1, keepdim=True)) * keep
        strictly_larger = z[..., None, :] > z[..., :, None]  # [.., i, j]: token j beats token i
        above = (strictly_larger * w[..., None, :]).sum(-1)
        keep &= above < p * w.sum(-1, keepdim=True)
    return keep


FILTER_CASES = {
    "smooth": lambda g: torch.randn(16, 700, generator=g),
    "ties": lambda g: torch.randint(0, 6, (16, 700), generator=g).float(),  # hundreds of equal logits
    "all-equal": lambda g: torch.zeros(4, 300),
    "peaked": lambda g: 40 * torch.randn(16, 500, generator=g),  # most logits far below the bucket span
    "one-huge": lambda g: torch.cat([torch.full((8, 1), 200.0), torch.randn(8, 299, generator=g)], dim=1),
}


@pytest.mark.parametrize("case", FILTER_CASES)
@pytest.mark.parametrize("k,p", [(None, 0.9), (5, None), (160, None), (160, 0.9), (50, 0.3), (699, 0.999),
                                 (1, 0.5), (None, 0.05), (10_000, 0.7), (0, 1.0)])
def test_threshold_filter_equals_the_definition(case, k, p):
    logits = FILTER_CASES[case](torch.Generator().manual_seed(len(case) * 31 + (k or 0)))
    kept = torch.isfinite(filter_logits(logits, SamplingControls(top_k=k, top_p=p)))
    assert torch.equal(kept, kept_by_definition(logits, k, p))
    assert torch.equal(filter_logits(logits, SamplingControls(top_k=k, top_p=p))[kept], logits[kept])


def test_threshold_filter_over_the_paper_vocabulary_equals_the_definition():
    """64,000 codes, top-k 16,000, top-p 0.9: the bench's setting, checked against a sort."""
    logits = torch.randn(4, 64000, generator=torch.Generator().manual_seed(0)) * 2
    kept = torch.isfinite(filter_logits(logits, SamplingControls(top_k=16000, top_p=0.9)))
    z = logits.double()
    values, order = z.sort(dim=-1, descending=True)  # no ties among these floats
    values = values.masked_fill(torch.arange(64000) >= 16000, float("-inf"))
    probs = torch.softmax(values, dim=-1)
    keep_sorted = torch.cumsum(probs, dim=-1) - probs < 0.9
    expected = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    assert torch.equal(kept, expected)
    assert 0 < kept.sum(-1).min() and kept.sum(-1).max() <= 16000


def test_draw_frequencies_follow_the_renormalised_kept_probabilities_with_ties():
    logits = torch.tensor([2.0, 1.0, 1.0, 0.0, 0.0, -1.0]).expand(60000, 6)
    controls = SamplingControls(top_k=4)  # the k-th largest is tied with the 5th: both stay
    tokens = draw(logits, controls, torch.Generator().manual_seed(0))
    probs = torch.softmax(logits[0].masked_fill(logits[0] < 0.0, float("-inf")), dim=-1)
    freq = torch.bincount(tokens, minlength=6).float() / tokens.numel()
    tol = 4 * torch.sqrt(probs * (1 - probs) / tokens.numel()) + 1e-9
    assert torch.all((freq - probs).abs() <= tol), (freq, probs)


def draw_by_definition(logits: torch.Tensor, keep: torch.Tensor, temperature: float, generator) -> torch.Tensor:
    """Inverse-CDF sampling as defined: one uniform per row, located in the running sum of the
    kept tokens' probabilities over the whole vocabulary, in vocabulary order."""
    z = logits.float() / temperature if temperature != 1.0 else logits.float()
    weights = torch.exp(z - z.amax(-1, keepdim=True)) * keep
    cdf = torch.cumsum(weights, dim=-1)
    uniform = torch.rand((z.shape[0], 1), generator=generator)
    return torch.searchsorted(cdf, uniform * cdf[:, -1:], right=True).clamp_max_(z.shape[-1] - 1).view(-1)


@pytest.mark.parametrize("case", FILTER_CASES)
@pytest.mark.parametrize("k,p,temperature", [(None, 0.9, 1.0), (160, 0.9, 0.7), (5, None, 1.0), (None, None, 1.3)])
def test_draw_picks_the_token_the_definition_picks_for_the_same_uniform(case, k, p, temperature):
    logits = FILTER_CASES[case](torch.Generator().manual_seed(len(case) * 7 + (k or 0)))
    z = logits / temperature if temperature != 1.0 else logits
    expected = draw_by_definition(logits, kept_by_definition(z, k, p), temperature, torch.Generator().manual_seed(3))
    tokens = draw(logits, SamplingControls(temperature=temperature, top_k=k, top_p=p), torch.Generator().manual_seed(3))
    assert torch.equal(tokens, expected)


@pytest.mark.parametrize("rows,vocab", [(64, 64000), (300, 2500), (40, 1024), (40, 1023), (40, 4097)])
def test_draw_over_wide_vocabularies_picks_the_definitions_token(rows, vocab):
    """Vocabularies spanning several summation chunks, whole or with a tail; many draws per row."""
    logits = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(vocab)) * 2
    controls = SamplingControls(top_k=vocab // 4, top_p=0.9)
    keep = torch.isfinite(filter_logits(logits, controls))  # equal to the definition: tests above
    for seed in range(5):
        expected = draw_by_definition(logits, keep, 1.0, torch.Generator().manual_seed(seed))
        assert torch.equal(draw(logits, controls, torch.Generator().manual_seed(seed)), expected)


@pytest.mark.parametrize("vocab", [700, 1024, 3000, 64000])
def test_inverse_cdf_on_exact_running_sums_picks_the_first_sum_that_exceeds_the_draw(vocab):
    """Integer weights make every running sum exact, and each draw lands exactly on one of them:
    the token after it is picked, never a zero-weight (dropped) one, as with a full running sum."""
    generator = torch.Generator().manual_seed(vocab)
    weights = torch.randint(0, 3, (32, vocab), generator=generator).float()  # 0 stands for a dropped token
    cdf = torch.cumsum(weights, dim=-1)
    landing = torch.randint(0, vocab - 1, (32, 1), generator=generator)
    uniform = cdf.gather(1, landing) / cdf[:, -1:]
    target = uniform * cdf[:, -1:]
    expected = torch.searchsorted(cdf, target, right=True).clamp_max_(vocab - 1).view(-1)
    assert (target == cdf.gather(1, landing)).float().mean() > 0.5  # the draws do land on the sums
    tokens = _inverse_cdf(weights, uniform)
    assert torch.equal(tokens, expected) and (weights.gather(1, tokens[:, None]) > 0).all()
