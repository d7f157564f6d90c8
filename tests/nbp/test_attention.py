"""Every attention backend against the naive softmax(QK^T)V, backend selection and its errors."""

import pytest
import torch

from nbp.attention import (
    attention,
    available_backends,
    build_mask,
    flex_importable,
    naive_attention,
    resolve_backend,
    xformers_importable,
)
from nbp.errors import UserError
from nbp.masks import MaskSpec, block_causal_mask



SPECS = [MaskSpec(3, 4, 5, "hybrid"), MaskSpec(1, 8, 4, "start_block"), MaskSpec(0, 1, 9, "start_block")]


def qkv(spec, device="cpu", dtype=torch.float32, kv_len=None):
    g = torch.Generator().manual_seed(spec.seq_len)
    shape = (2, 3, spec.seq_len, 16)
    kv_shape = (2, 3, kv_len or spec.seq_len, 16)
    q = torch.randn(shape, generator=g)
    k, v = torch.randn(kv_shape, generator=g), torch.randn(kv_shape, generator=g)
    return [t.to(device=device, dtype=dtype) for t in (q, k, v)]


def check_backend_matches_naive(backend, device, atol=1e-5):
    for spec in SPECS:
        q, k, v = qkv(spec, device)
        mask = build_mask(backend, spec, device)
        want = naive_attention(q.double(), k.double(), v.double(), block_causal_mask(spec, device)).float()
        torch.testing.assert_close(attention(q, k, v, mask=mask, backend=backend), want, atol=atol, rtol=0)
        # decoding: a few new queries against a longer cache, no mask
        q_new = q[:, :, -spec.block_len:]
        want = naive_attention(q_new.double(), k.double(), v.double()).float()
        torch.testing.assert_close(attention(q_new, k, v, mask=None, backend=backend), want, atol=atol, rtol=0)


@pytest.mark.parametrize("backend", available_backends("cpu"))
def test_cpu_backends_match_naive(backend):
    check_backend_matches_naive(backend, "cpu")


def test_naive_attention_is_a_real_reference():
    # one query, two keys: the weights are a softmax of the two dot products
    q = torch.tensor([[[[1.0, 0.0]]]])
    k = torch.tensor([[[[2.0, 0.0], [0.0, 0.0]]]])
    v = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    w = torch.softmax(torch.tensor([2.0 / 2**0.5, 0.0]), 0)
    torch.testing.assert_close(naive_attention(q, k, v)[0, 0, 0], w)
    masked = naive_attention(q, k, v, torch.tensor([[False, True]]))
    torch.testing.assert_close(masked[0, 0, 0], torch.tensor([0.0, 1.0]))


def test_masked_keys_have_no_influence():
    spec = SPECS[0]
    q, k, v = qkv(spec)
    mask = build_mask("sdpa", spec, "cpu")
    out = attention(q, k, v, mask=mask)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, -4:] += 5.0  # the last block: only the last block may see it
    v2[:, :, -4:] -= 3.0
    out2 = attention(q, k2, v2, mask=mask)
    torch.testing.assert_close(out[:, :, :-4], out2[:, :, :-4], atol=0, rtol=0)
    assert not torch.allclose(out[:, :, -4:], out2[:, :, -4:])


def test_auto_selects_sdpa_on_cpu_and_rejects_gpu_only_backends():
    assert resolve_backend("auto", "cpu") == "sdpa"
    assert resolve_backend("sdpa", "cpu") == "sdpa"
    with pytest.raises(UserError, match="flex.*CUDA"):
        resolve_backend("flex", "cpu")
    with pytest.raises(UserError, match="xformers"):
        resolve_backend("xformers", "cpu")
    with pytest.raises(UserError, match="valid: auto, sdpa, flex, xformers"):
        resolve_backend("flash", "cpu")


def test_auto_prefers_flex_on_cuda_when_importable():
    # device logic only: no kernel runs
    assert resolve_backend("auto", "cuda") == ("flex" if flex_importable() else "sdpa")
    assert ("xformers" in available_backends("cuda")) == xformers_importable()


def test_xformers_bias_matches_mask():
    # the CPU-side part of the xformers path: an additive bias, 8-aligned storage
    spec = SPECS[0]
    bias = build_mask("xformers", spec, "cpu")
    assert bias.shape == (spec.seq_len, spec.seq_len)
    assert bias.stride(0) % 8 == 0
    dense = block_causal_mask(spec)
    assert torch.all(bias[dense] == 0) and torch.all(bias[~dense] == float("-inf"))


def test_flex_block_mask_is_cached_per_shape():
    if not flex_importable():
        pytest.skip("FlexAttention is not importable in this torch build")
    spec = SPECS[1]
    a = build_mask("flex", spec, "cpu")
    assert a is build_mask("flex", spec, "cpu")
    assert a.shape[-2:] == (spec.seq_len, spec.seq_len)


def test_flex_block_mask_gives_naive_attention_on_cpu_forward():
    # CPU stand-in for the GPU test: eager FlexAttention (forward only on CPU) with our cached
    # BlockMask, over two 128-token tiles so that tile skipping and partial tiles both occur
    if not flex_importable():
        pytest.skip("FlexAttention is not importable in this torch build")
    import warnings

    from torch.nn.attention.flex_attention import flex_attention

    spec = MaskSpec(1, 8, 20, "start_block")
    q, k, v = qkv(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager FlexAttention warns that it is not compiled
        out = flex_attention(q, k, v, block_mask=build_mask("flex", spec, "cpu"))
    want = naive_attention(q.double(), k.double(), v.double(), block_causal_mask(spec)).float()
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not flex_importable(), reason="FlexAttention is not importable")
def test_flex_matches_naive_on_gpu():
    check_backend_matches_naive("flex", "cuda", atol=2e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not xformers_importable(), reason="xformers is not installed")
def test_xformers_matches_naive_on_gpu():
    check_backend_matches_naive("xformers", "cuda", atol=2e-5)


@pytest.mark.gpu
def test_sdpa_matches_naive_on_gpu():
    check_backend_matches_naive("sdpa", "cuda", atol=2e-5)
