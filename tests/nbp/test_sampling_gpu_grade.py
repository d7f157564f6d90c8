"""Inference the way a GPU runs it: one reused KV cache, compile chosen per call, reduced precision.

The compile tests use a counting backend (torch._dynamo.testing.CompileCounter): dynamo traces
and guards exactly as for inductor, so a new graph or a recompile shows up as a count, but the
graphs run eagerly, which keeps the suite fast on a CPU.
"""

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from nbp import precision
from nbp.errors import UserError
from nbp.model_file import load_model_file, save_model_file
from nbp.sampling import generate, load_model
from tests.nbp.test_model import make, sample_cond, teacher_forced_decode, tokens

BF16_RELATIVE_ROUNDING = 2.0 ** -8  # bfloat16 keeps 8 significant bits: one rounding moves a value by <= 2^-8 of it


def cache_pointers(model):
    return [t.data_ptr() for t in model._cache.k + model._cache.v]


def counted_compile(model) -> CompileCounter:
    graphs = CompileCounter()
    model.compile_step(backend=graphs)
    torch._dynamo.reset()  # graphs compiled by earlier tests must not hide new ones
    return graphs


@pytest.mark.parametrize("guided", [False, True])
def test_two_compiled_calls_and_a_smaller_last_batch_reuse_one_cache_and_compile_nothing_new(guided):
    model = make(block=(1, 1, 4), first_block="hybrid", condition="class", arch="modern")
    graphs = counted_compile(model)
    kw = dict(seed=0, top_k=10, top_p=0.9, compile=True, cfg_scale=2.0 if guided else 1.0)
    generate(model, cond=[0, 1, 2], **kw)
    pointers, first_graphs = cache_pointers(model), graphs.frame_count
    assert first_graphs == 2  # the one-token step of the hybrid first block and the block step
    generate(model, cond=[2, 0, 1], **kw)
    smaller = generate(model, cond=[1], **kw)  # the last batch of a run: padded, not recompiled
    assert cache_pointers(model) == pointers
    assert graphs.frame_count == first_graphs
    # the padding rows change nothing: a model that never saw a larger batch samples the same
    fresh = make(block=(1, 1, 4), first_block="hybrid", condition="class", arch="modern")
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(smaller, generate(fresh, cond=[1], **{**kw, "compile": False}))


def test_a_larger_batch_or_another_dtype_replaces_the_cache_and_a_smaller_one_does_not():
    model = make(block=(1, 1, 4), condition="class")
    first = model.setup_cache(4)
    assert model.setup_cache(2) is first and first.batch_size == 4
    larger = model.setup_cache(6)
    assert larger is not first and larger.batch_size == 6
    half = model.setup_cache(2, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and model.setup_cache(1, dtype=torch.bfloat16) is half


def test_compile_is_chosen_per_call_and_never_sticks():
    model = make(block=(1, 1, 4), condition="class")
    counted_compile(model)
    compiled_runs = []
    compiled_step = model._compiled_step
    model._compiled_step = lambda *a: compiled_runs.append(1) or compiled_step(*a)
    generate(model, cond=[0, 1], seed=3, compile=True)
    runs_after_compiled_call = len(compiled_runs)
    assert runs_after_compiled_call == model.config.decode_steps - 1  # every step after the prefill
    eager = generate(model, cond=[0, 1], seed=3, compile=False)
    assert len(compiled_runs) == runs_after_compiled_call
    assert torch.equal(eager, generate(model, cond=[0, 1], seed=3, compile=True))


def test_runtime_switches_are_not_stored_and_ignored_in_old_files(tmp_path):
    model = make(block=(1, 1, 4), condition="class")
    training_config = model.config.replace(compile=True, attn_backend="sdpa", grad_checkpointing=True)
    path = save_model_file(model, training_config, tmp_path / "model.pt")
    stored = torch.load(path, weights_only=True)["config"]
    assert not {"compile", "attn_backend", "grad_checkpointing"} & set(stored)
    stored.update(compile=True, attn_backend="sdpa", grad_checkpointing=True)  # as files of earlier releases
    torch.save({**torch.load(path, weights_only=True), "config": stored}, path)
    loaded = load_model_file(path)
    assert (loaded.config.compile, loaded.config.attn_backend, loaded.config.grad_checkpointing) == (False, "auto", False)
    assert all(block._compiled_call_impl is None for block in loaded.blocks)


def test_loading_assigns_the_weights_without_initialising_them(tmp_path, monkeypatch):
    model = make(block=(1, 1, 4), condition="class", arch="modern")
    path = save_model_file(model, model.config, tmp_path / "model.pt")
    initialised = []
    normal = torch.nn.init.normal_

    def recording_normal(tensor, *args, **kwargs):
        initialised.append(tensor.device.type)
        return normal(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "normal_", recording_normal)
    loaded = load_model(path, "cpu", dtype="bfloat16")
    assert initialised and set(initialised) == {"meta"}  # init ran only on storage-less tensors
    for (name, want), got in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert got.dtype == torch.bfloat16 and torch.equal(got, want.to(torch.bfloat16)), name
    assert loaded.rope_cos.dtype == torch.float32  # positions keep full precision
    torch.testing.assert_close(loaded.rope_cos, model.rope_cos, rtol=0, atol=0)


@pytest.mark.parametrize("case", [dict(block=(1, 1, 4), first_block="hybrid", condition="class"),
                                  dict(block=(1, 2, 4), condition="frames", context_frames=1),
                                  dict(block=(1, 1, 4), first_block="hybrid", hybrid_blocks=4, condition="class",
                                       arch="modern", class_every_position=True)],
                         ids=["paper-ucf", "k600", "demo-class"])
@pytest.mark.parametrize("how", ["bf16-weights", "autocast"])
def test_cached_logits_equal_recomputed_in_bfloat16(case, how):
    """Cached and recomputed decoding run the same bfloat16 ops on differently shaped matmuls, so
    they may differ by the rounding of the last ops: a few bfloat16 steps at the logits' scale
    (8 * 2^-8 of the largest logit allows three roundings on top of one ulp). Reduced precision
    must really be in use: the result differs from float32 by more than float32 rounding would."""
    reference = make(**case)
    model = make(**case)
    model.load_state_dict(reference.state_dict())
    if how == "bf16-weights":
        precision.cast_weights(model, torch.bfloat16)
    video, cond = tokens(model), sample_cond(model, 2)
    with torch.no_grad(), precision.compute_context(model, torch.bfloat16, "cpu"):
        recomputed = model(video, cond).float()
        cache = model.setup_cache(2)
        assert cache.dtype == torch.bfloat16
        cached, _ = teacher_forced_decode(model, video, cond, cache)
    scale = recomputed.abs().max()
    torch.testing.assert_close(cached.float(), recomputed, rtol=0, atol=float(8 * BF16_RELATIVE_ROUNDING * scale))
    with torch.no_grad():
        full = reference(video, cond)
    assert (recomputed - full).abs().max() > 1e-4 * scale  # bfloat16 really ran
    torch.testing.assert_close(recomputed, full, rtol=0, atol=float(0.1 * scale))  # and stayed close to float32


def test_generate_in_bfloat16_leaves_the_model_as_it_was():
    model = make(block=(1, 1, 4), first_block="hybrid", condition="class")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grid = generate(model, cond=[0, 1], seed=1, top_k=8, dtype="bfloat16")
    assert grid.shape == (2, *model.config.grid)
    assert model._cache.dtype == torch.bfloat16
    assert all(torch.equal(v, before[k]) and v.dtype == torch.float32 for k, v in model.state_dict().items())
    with pytest.raises(UserError, match="float32 \\| bfloat16 \\| float16|valid: float32, bfloat16, float16"):
        generate(model, cond=[0], dtype="half-ish")
    precision.cast_weights(model, torch.bfloat16)
    with pytest.raises(UserError, match="weights are bfloat16"):
        generate(model, cond=[0], dtype="float32")


def test_dtype_defaults():
    assert precision.resolve_dtype(None, "cpu") == torch.float32
    assert precision.resolve_dtype(None, "cuda") == torch.bfloat16
    assert precision.resolve_dtype("float16", "cpu") == torch.float16
    assert precision.resolve_dtype(torch.bfloat16, "cpu") == torch.bfloat16
    with pytest.raises(UserError, match="--dtype 'fp8' is invalid"):
        precision.resolve_dtype("fp8", "cpu", "--dtype")


def test_tokenizer_decode_and_encode_in_bfloat16_stay_close_to_float32():
    from tests.tokenizer.helpers import tiny_config
    from tokenizer import VideoTokenizer

    tok = VideoTokenizer(tiny_config()).eval()
    ids = torch.randint(0, tok.vocab_size, (1, 5, 4, 4), generator=torch.Generator().manual_seed(0))
    exact, half = tok.decode(ids), tok.decode(ids, dtype="bfloat16")
    assert half.dtype == torch.float32 and half.shape == exact.shape
    assert 0 < (half - exact).abs().max() < 0.05  # the decoder ran in bfloat16, and not far off
    video = exact.detach()
    assert tok.encode(video, dtype="bfloat16").shape == tok.encode(video).shape


@pytest.mark.gpu
def test_compiled_cuda_graphs_reuse_the_cache_across_calls_and_a_smaller_batch():
    from torch._dynamo.utils import counters

    model = make(block=(1, 1, 4), first_block="hybrid", condition="class", arch="modern").cuda()
    torch._dynamo.reset()
    counters.clear()
    kw = dict(seed=0, top_k=10, compile=True)
    generate(model, cond=[0, 1, 2], **kw)
    pointers, graphs = cache_pointers(model), counters["stats"]["unique_graphs"]
    generate(model, cond=[2, 1, 0], **kw)
    generate(model, cond=[1], **kw)
    assert cache_pointers(model) == pointers
    assert counters["stats"]["unique_graphs"] == graphs
    assert model._cache.dtype == torch.bfloat16  # the CUDA default
