"""NBPTransformer: equivalence with a plain causal transformer, no leakage, conditions, cached decoding."""

import pytest
import torch
import torch.nn.functional as F

from nbp.config import PRESETS, NBPConfig
from nbp.errors import UserError
from nbp.kv_cache import KVCache
from nbp.model import NBPTransformer

V = 37


def tiny(**overrides):
    base = dict(vocab_size=V, grid=(3, 4, 4), block=(1, 1, 4), condition="none", num_classes=3,
                n_layer=2, n_head=2, n_embd=32, dropout=0.0, p_uncond=0.0)
    return NBPConfig.from_preset("tiny", **{**base, **overrides})


def make(**overrides):
    return NBPTransformer(tiny(**overrides)).eval()


def sample_cond(model, batch, seed=1):
    g = torch.Generator().manual_seed(seed)
    kind = model.config.condition
    if kind == "class":
        return torch.randint(0, model.config.num_classes, (batch,), generator=g)
    if kind == "frames":
        return torch.randint(0, V, (batch, model.prefix_len), generator=g)
    return None


def tokens(model, batch=2, seed=0):
    return torch.randint(0, V, (batch, model.num_tokens), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- next-token special case


def plain_causal_forward(model, video):
    """A minGPT forward written out by hand with the model's weights and a causal mask."""
    first = model.start_emb if model.config.first_block == "start_block" else model.bos_emb
    x = torch.cat([first.expand(video.shape[0], -1, -1), model.tok_emb(video[:, :-1])], dim=1)
    x = x + model.pos_emb
    B, S, C = x.shape
    H = model.config.n_head
    for block in model.blocks:
        h = block.norm1(x)
        q, k, v = (t.view(B, S, H, C // H).transpose(1, 2) for t in block.attn.qkv(h).split(C, dim=2))
        scores = (q @ k.transpose(-1, -2)) / (C // H) ** 0.5
        scores = scores.masked_fill(torch.ones(S, S).triu(1).bool(), float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, S, C)
        x = x + block.attn.proj(y)
        h = block.norm2(x)
        x = x + block.mlp.proj(F.gelu(block.mlp.fc(h)))
    return model.head(model.norm_f(x))


@pytest.mark.parametrize("first_block", ["start_block", "hybrid"])
def test_block_of_one_is_a_plain_causal_transformer(first_block):
    model = make(block=(1, 1, 1), first_block=first_block)
    video = tokens(model)
    torch.testing.assert_close(model(video), plain_causal_forward(model, video), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- no leakage

LEAK_CASES = [
    dict(block=(1, 1, 4)),
    dict(block=(1, 2, 2), first_block="hybrid", condition="class"),
    dict(block=(1, 1, 4), first_block="hybrid", hybrid_blocks=4, condition="class", arch="modern"),
    dict(grid=(4, 4, 4), block=(2, 2, 2), arch="modern"),
    dict(block=(1, 2, 4), condition="frames", context_frames=1, arch="modern", first_block="hybrid"),
]


@pytest.mark.parametrize("case", LEAK_CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_later_blocks_do_not_change_earlier_outputs(case):
    model = make(**case)
    L, n, K = model.block_len, model.layout.num_blocks, model.config.token_by_token
    video, cond = tokens(model), sample_cond(model, 2)
    logits = model(video, cond)
    for k in range(n - 1):
        changed = video.clone()
        changed[:, (k + 1) * L:] = (changed[:, (k + 1) * L:] + 1) % V  # change blocks k+1 ..
        new = model(changed, cond)
        # positions predicting blocks 0 .. k+1 only saw blocks <= k; inside a hybrid start block,
        # generated one token at a time, only the first token of block k+1 is predicted blind to it
        unseen = (k + 1) * L + 1 if (k + 1) * L < K else (k + 2) * L
        torch.testing.assert_close(new[:, :unseen], logits[:, :unseen], atol=0, rtol=0)
        if unseen < n * L:
            assert not torch.allclose(new[:, unseen:], logits[:, unseen:])


@pytest.mark.parametrize("hybrid_blocks", [1, 3])
def test_hybrid_first_blocks_are_causal(hybrid_blocks):
    model = make(block=(1, 2, 2), first_block="hybrid", hybrid_blocks=hybrid_blocks)
    video = tokens(model)
    logits = model(video)
    for j in range(hybrid_blocks * model.block_len):
        changed = video.clone()
        changed[:, j] = (changed[:, j] + 1) % V
        new = model(changed)
        # outputs predicting v_0 .. v_j did not see v_j
        torch.testing.assert_close(new[:, : j + 1], logits[:, : j + 1], atol=0, rtol=0)
        assert not torch.allclose(new[:, j + 1:], logits[:, j + 1:])


# ----------------------------------------------------------------------------- conditions


def test_class_dropout_produces_the_null_class():
    model = make(condition="class", num_classes=5, p_uncond=0.5)
    labels = torch.arange(5).repeat(200)
    dropped = model.drop_condition(labels)
    null = dropped == 5
    assert 0.4 < null.float().mean() < 0.6
    assert torch.equal(dropped[~null], labels[~null])
    assert torch.equal(model.null_condition(labels), torch.full_like(labels, 5))


def test_training_forward_drops_condition_and_eval_does_not():
    model = make(condition="class", p_uncond=1.0)
    video, labels = tokens(model), torch.tensor([0, 2])
    null_logits = model(video, model.null_condition(labels))
    model.train()  # dropout is 0, so only the condition dropout differs
    torch.testing.assert_close(model(video, labels), null_logits)
    model.eval()
    assert not torch.allclose(model(video, labels), null_logits)
    # "no label" (-1) is the null class
    torch.testing.assert_close(model(video, torch.tensor([-1, -1])), null_logits)


def test_frames_dropout_replaces_the_whole_context():
    model = make(condition="frames", context_frames=1, p_uncond=1.0)
    ctx = sample_cond(model, 3)
    assert torch.equal(model.drop_condition(ctx), torch.full_like(ctx, V))


def test_frames_condition_returns_logits_for_generated_tokens_only():
    model = make(condition="frames", context_frames=1)
    assert model.prefix_len == 16 and model.num_tokens == 32
    logits = model(tokens(model), sample_cond(model, 2))
    assert logits.shape == (2, 32, V)


def test_bad_condition_is_a_user_error():
    with pytest.raises(UserError, match="class ids"):
        make(condition="class")(torch.zeros(2, 48, dtype=torch.long))
    with pytest.raises(UserError, match="context tokens"):
        make(condition="frames", context_frames=1)(torch.zeros(2, 32, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(UserError, match="unconditional"):
        make()(torch.zeros(2, 48, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(UserError, match="block-major"):
        make()(torch.zeros(2, 47, dtype=torch.long))


# ----------------------------------------------------------------------------- cached decoding


def teacher_forced_decode(model, video, cond, cache=None, compiled=False):
    """prefill + step over the true tokens, concatenating the logits of every call."""
    L, n, K = model.block_len, model.layout.num_blocks, model.config.token_by_token
    cache = cache or model.new_cache(video.shape[0])
    buffers = [t.data_ptr() for t in cache.k + cache.v]
    outs = [model.prefill(cond, cache)]
    for i in range(K - 1):  # hybrid: the start block goes in one token at a time
        outs.append(model.step(video[:, i:i + 1], cache, compiled))
    for b in range(max(K // L - 1, 0), n - 1):  # then the video blocks, from the block that ends at v_{K-1}
        outs.append(model.step(video[:, b * L:(b + 1) * L], cache, compiled))
    assert [t.data_ptr() for t in cache.k + cache.v] == buffers  # never reallocated
    assert cache.pos == model.seq_len
    return torch.cat(outs, dim=1), len(outs)


DECODE_CASES = [
    dict(block=(1, 1, 4)),  # rows
    dict(block=(1, 2, 2), condition="class"),  # 2D blocks
    dict(block=(1, 1, 4), first_block="hybrid", condition="class"),  # the paper's UCF setting
    dict(block=(1, 1, 4), first_block="hybrid", hybrid_blocks=4, condition="class"),  # a whole first frame
    dict(block=(1, 2, 4), first_block="hybrid", hybrid_blocks=2, condition="frames", context_frames=1),
    dict(block=(1, 1, 4), first_block="hybrid", hybrid_blocks=12, arch="modern"),  # every block: NTP order
    dict(block=(1, 2, 4), condition="frames", context_frames=1),  # the K600 setting
    dict(grid=(4, 4, 4), block=(2, 2, 2), arch="modern", first_block="hybrid", tie_head=True),
    dict(block=(1, 1, 1), arch="modern", condition="class"),  # next-token prediction
    dict(block=(1, 1, 4), first_block="hybrid", hybrid_blocks=4, condition="class", arch="modern",
         class_every_position=True),  # the demo's class models
]


@pytest.mark.parametrize("case", DECODE_CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_prefill_and_step_equal_forward(case):
    model = make(**case)
    video, cond = tokens(model), sample_cond(model, 2)
    decoded, calls = teacher_forced_decode(model, video, cond)
    torch.testing.assert_close(decoded, model(video, cond), atol=1e-5, rtol=1e-5)
    assert calls == model.config.decode_steps


@pytest.mark.parametrize("class_every_position", [False, True])
def test_compiled_static_step_needs_two_graphs_and_equals_forward(class_every_position):
    from torch._dynamo.testing import CompileCounter

    model = make(block=(1, 2, 2), first_block="hybrid", condition="class", arch="modern",
                 class_every_position=class_every_position)
    video = tokens(model)
    graphs = CompileCounter()  # counts compiled graphs and runs them as they are
    model.compile_step(backend=graphs)
    cache = model.new_cache(2)
    for seed in (1, 2):  # a second video, of other classes, reuses the cache and the graphs
        cond = sample_cond(model, 2, seed=seed)
        decoded, _ = teacher_forced_decode(model, video, cond, cache, compiled=True)
        torch.testing.assert_close(decoded, model(video, cond), atol=1e-5, rtol=1e-5)
    assert graphs.frame_count == 2  # one token (first block) and one block, whatever the position


def test_class_every_position_adds_the_class_embedding_to_every_input():
    on = make(block=(1, 1, 4), condition="class", arch="modern", class_every_position=True)
    off = NBPTransformer(on.config.replace(class_every_position=False)).eval()
    off.load_state_dict(on.state_dict())  # the switch adds no weights
    video, cond = tokens(on), torch.tensor([0, 2])
    inputs = {}
    for name, model in (("on", on), ("off", off)):
        model.blocks[0].register_forward_pre_hook(lambda _, args, name=name: inputs.update({name: args[0]}))
        model(video, cond)
    expected = on.class_emb(cond)[:, None].expand(-1, on.seq_len, -1)
    torch.testing.assert_close(inputs["on"] - inputs["off"], expected, atol=1e-6, rtol=0)


def test_compile_switch_wraps_the_blocks():
    model = NBPTransformer(tiny(compile=True))
    assert all(block._compiled_call_impl is not None for block in model.blocks)
    assert "blocks.0.attn.qkv.weight" in model.state_dict()  # no wrapper prefix in the weights


def test_step_must_cover_one_block():
    model = make(block=(1, 1, 4))
    cache = model.new_cache(2)
    model.prefill(None, cache)
    with pytest.raises(ValueError, match="exactly one block"):
        model.step(torch.zeros(2, 8, dtype=torch.long), cache)  # two blocks at once would see each other
    model.step(torch.zeros(2, 4, dtype=torch.long), cache)
    hybrid = make(block=(1, 1, 4), first_block="hybrid")
    cache = hybrid.new_cache(2)
    hybrid.prefill(None, cache)
    with pytest.raises(ValueError):
        hybrid.step(torch.zeros(2, 4, dtype=torch.long), cache)  # the first block goes token by token


def test_kv_cache_writes_by_slice():
    cache = KVCache(n_layer=2, batch_size=1, n_head=1, max_len=5, head_dim=2)
    k1, v1 = torch.ones(1, 1, 3, 2), 2 * torch.ones(1, 1, 3, 2)
    k, v = cache.update(0, k1, v1)
    assert k.shape == (1, 1, 3, 2) and k.data_ptr() == cache.k[0].data_ptr()
    assert cache.pos == 0  # moves only when the whole step is written
    cache.update(1, k1, v1)
    cache.advance(3)
    k, v = cache.update(0, 3 * torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert k[0, 0, :, 0].tolist() == [1, 1, 1, 3, 3] and v[0, 0, :, 0].tolist() == [2, 2, 2, 0, 0]
    cache.advance(2)
    with pytest.raises(ValueError, match="overflow"):
        cache.update(0, k1[:, :, :1], v1[:, :, :1])
    cache.reset()
    assert cache.pos == 0


# ----------------------------------------------------------------------------- training switches


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    plain = make(block=(1, 2, 2), condition="class")
    ckpt = NBPTransformer(tiny(block=(1, 2, 2), condition="class", grad_checkpointing=True))
    ckpt.load_state_dict(plain.state_dict())
    video, cond = tokens(plain), sample_cond(plain, 2)
    losses = []
    for model in (plain.train(), ckpt.train()):
        loss, _ = model.loss(video, cond)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1])
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_tied_head_shares_the_token_embedding():
    model = make(tie_head=True)
    assert model.head is None
    untied = make()
    assert untied.num_params() - model.num_params() == V * 32


def test_a_few_steps_reduce_the_loss():
    model = NBPTransformer(tiny(block=(1, 2, 2), condition="class", arch="modern")).train()
    video, cond = tokens(model, batch=4), sample_cond(model, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(20):
        loss, _ = model.loss(video, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 * first, (first, loss.item())


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "overrides,field",
    [
        (dict(block=(1, 3, 4)), "block"),
        (dict(first_block="middle"), "first_block"),
        (dict(condition="text"), "condition"),
        (dict(condition="frames", context_frames=3), "context_frames"),
        (dict(context_frames=1), "context_frames"),
        (dict(n_embd=33), "n_embd"),
        (dict(p_uncond=1.5), "p_uncond"),
        (dict(attn_backend="flash"), "attn_backend"),
        (dict(arch="mamba"), "arch"),
        (dict(class_every_position=True), "class_every_position"),  # an unconditional model has no class
        (dict(hybrid_blocks=2), "hybrid_blocks"),  # start_block mode has no token-by-token blocks
        (dict(first_block="hybrid", hybrid_blocks=13), "hybrid_blocks"),  # only 12 blocks
        (dict(first_block="hybrid", hybrid_blocks=0), "hybrid_blocks"),
    ],
)
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(UserError, match=f"NBPConfig.{field}="):
        tiny(**overrides)


def test_presets_and_derived_shapes():
    assert set(PRESETS) == {"tiny", "base", "xl", "3b"}
    with pytest.raises(UserError, match="unknown NBP preset"):
        NBPConfig.from_preset("huge")
    with pytest.raises(UserError, match="unknown NBPConfig field"):
        NBPConfig.from_preset("tiny", layers=3)
    ucf = NBPConfig.from_preset("base", grid=[5, 16, 16], block=[1, 1, 16], first_block="hybrid")
    assert ucf.grid == (5, 16, 16) and ucf.num_tokens == 1280 and ucf.decode_steps == 95
    first_frame = ucf.replace(hybrid_blocks=16)  # the whole first latent frame one token at a time
    assert first_frame.start_len == 256 and first_frame.decode_steps == 256 + 64
    k600 = NBPConfig.from_preset("base", condition="frames", context_frames=2, block=(1, 1, 16))
    assert k600.num_tokens == 768 and k600.prefix_len == 512 and k600.decode_steps == 48
    assert NBPConfig.from_dict(ucf.to_dict()) == ucf


def test_base_preset_size_on_meta_device():
    with torch.device("meta"):
        model = NBPTransformer(NBPConfig.from_preset("base"))
    blocks = sum(p.numel() for p in model.blocks.parameters())
    assert 24 * 12 * 1536**2 <= blocks < 24 * 12.1 * 1536**2  # about 680M in the transformer blocks


# ----------------------------------------------------------------------------- GPU backends


def gpu_backends():
    from nbp.attention import available_backends

    return [b for b in ("flex", "xformers") if torch.cuda.is_available() and b in available_backends("cuda")]


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["flex", "xformers"])
def test_gpu_backend_trains_the_same_model_as_sdpa(backend):
    if backend not in gpu_backends():
        pytest.skip(f"{backend} is not available on this GPU machine")
    case = dict(block=(1, 2, 2), first_block="hybrid", condition="class", n_embd=64, n_head=2)
    ref = NBPTransformer(tiny(**case, attn_backend="sdpa")).cuda().train()
    other = NBPTransformer(tiny(**case, attn_backend=backend)).cuda().train()
    other.load_state_dict(ref.state_dict())
    video, cond = tokens(ref).cuda(), sample_cond(ref, 2).cuda()
    losses = []
    for model in (ref, other):
        loss, _ = model.loss(video, cond)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], atol=1e-4, rtol=1e-4)
    for (name, a), b in zip(ref.named_parameters(), other.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-3, msg=name)


@pytest.mark.gpu
def test_cached_decoding_on_gpu_with_compiled_step():
    model = make(block=(1, 1, 4), first_block="hybrid", condition="class").cuda()
    video, cond = tokens(model).cuda(), sample_cond(model, 2).cuda()
    decoded, _ = teacher_forced_decode(model, video, cond, compiled=True)
    torch.testing.assert_close(decoded, model(video, cond), atol=1e-4, rtol=1e-4)


def test_model_file_from_before_hybrid_blocks_loads_as_one_block(tmp_path):
    from nbp.model_file import load_model_file, save_model_file

    model = make(block=(1, 1, 4), first_block="hybrid", condition="class")
    path = save_model_file(model, model.config, tmp_path / "model.pt")
    data = torch.load(path, weights_only=True)
    del data["config"]["hybrid_blocks"]  # what files written by earlier releases hold
    torch.save(data, path)
    loaded = load_model_file(path)
    assert loaded.config.hybrid_blocks == 1 and loaded.config.decode_steps == 4 + 12 - 1
    video, cond = tokens(model), sample_cond(model, 2)
    torch.testing.assert_close(loaded(video, cond), model(video, cond), atol=0, rtol=0)


def test_token_cross_entropy_matches_the_definition_in_float64():
    from nbp.model import token_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g).to(torch.bfloat16)
    targets = torch.randint(0, 7, (2, 5), generator=g)
    x = logits.double()
    expected = (x.exp().sum(-1).log() - x.gather(-1, targets[..., None]).squeeze(-1))  # -log softmax at the target
    per_token = token_cross_entropy(logits, targets, reduction="none")
    assert per_token.shape == (2, 5) and per_token.dtype == torch.float32
    torch.testing.assert_close(per_token.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(token_cross_entropy(logits, targets).double(), expected.mean(), rtol=1e-5, atol=1e-5)
