"""The released transformer layouts (UCF-101 hybrid with text, K600 frame prediction) against the reference's golden outputs."""

from __future__ import annotations

import argparse
import functools
from pathlib import PurePosixPath

import pytest
import torch

from nbp.errors import UserError
from nbp.official.transformer import load_official_transformer
from nbp.sampling import generate, generate_tokens
from nbp.sampling_controls import SamplingControls
from tests.nbp.official.golden import DATA, load_golden

CASES = {"ucf": ("ucf_hybrid_tiny.ckpt", "ucf_hybrid_tiny_golden.pt"), "k600": ("k600_tiny.ckpt", "k600_tiny_golden.pt")}
GREEDY = SamplingControls(top_k=1)


@functools.cache
def _loaded(name: str):
    ckpt, golden = CASES[name]
    return name, load_official_transformer(DATA / ckpt), load_golden(golden)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    return _loaded(request.param)


@pytest.fixture(scope="module")
def ucf():
    return _loaded("ucf")


@pytest.fixture(scope="module")
def k600():
    return _loaded("k600")


def _inputs(model, golden):
    """(video tokens in our sequence order, condition) of the golden training sequences."""
    config = model.config
    grid = golden["video_ids"].view(-1, *config.grid)  # raster (t, h, w) order
    if config.condition == "class":
        cond = torch.tensor([config.class_names.index(n) for n in golden["class_names"]])
        return config.layout.grid_to_seq(grid), cond
    context, rest = grid[:, : config.context_frames], grid[:, config.context_frames:]
    return config.layout.grid_to_seq(rest), config.context_layout.grid_to_seq(context)


def test_configuration_comes_from_the_file(case):
    name, model, golden = case
    config = model.config
    args = torch.load(DATA / CASES[name][0], weights_only=False)["hyper_parameters"]["args"]
    assert (config.n_layer, config.n_head, config.n_embd) == (args.n_layer, args.n_head, args.n_embd)
    assert config.block_len == args.token_number_per_step
    assert config.seq_len == golden["input_ids"].shape[1]


def test_text_prefix_is_the_shipped_llama_ids(ucf):
    _, model, golden = ucf
    cond = torch.tensor([model.config.class_names.index(n) for n in golden["class_names"]])
    shift = golden["vocab_layout"]["text_shift"]
    assert torch.equal(model.class_text[cond] - shift, golden["llama_ids"])
    assert torch.equal(model.class_text[cond], golden["input_ids"][:, : model.config.class_text_len])


def test_teacher_forced_logits_match_golden(case):
    _, model, golden = case
    video, cond = _inputs(model, golden)
    want = golden["logits"]
    probe = torch.tensor(want["probe_ids"])
    offset, start = model.config.video_offset, model.config.logits_start
    for row in range(video.shape[0]):  # one sequence at a time: the full-vocabulary logits are large
        logits = model.all_logits(video[row:row + 1], cond[row:row + 1])[0]
        assert logits.shape[0] == want["logsumexp"].shape[1]
        assert (logits[:, probe] - want["probe_logits"][row]).abs().max() < 1e-3
        assert (logits.logsumexp(-1) - want["logsumexp"][row]).abs().max() < 1e-3
        # the logits the sampler uses are the same numbers, restricted to the video ids
        video_logits = model(video[row:row + 1], cond[row:row + 1])[0]
        assert torch.allclose(video_logits, logits[start:, offset:], atol=1e-5)


def test_greedy_sample_matches_golden(case):
    from nbp.sampler import sample_sequence

    name, model, golden = case
    config = model.config
    if name == "ucf":
        cond = torch.tensor([config.class_names.index(n) for n in golden["class_names"]])
        want = golden["greedy_video_ids"]
    else:
        cond = config.context_layout.grid_to_seq(golden["context_ids"].view(-1, config.context_frames, *config.grid[1:]))
        want = golden["greedy_continuation"]
    seq, stats = sample_sequence(model, cond, controls=GREEDY)
    assert stats.model_calls == golden["greedy_steps"]
    assert torch.equal(config.layout.seq_to_grid(seq).flatten(1), want)


def test_generate_takes_class_names_and_ids(ucf):
    _, model, golden = ucf
    by_name, _ = generate_tokens(model, cond=list(golden["class_names"]), controls=GREEDY)
    ids = [model.config.class_names.index(n) for n in golden["class_names"]]
    by_id = generate(model, cond=ids, top_k=1)
    assert torch.equal(by_name, by_id)
    assert torch.equal(by_name.flatten(1), golden["greedy_video_ids"])
    with pytest.raises(UserError, match="unknown class name"):
        generate_tokens(model, cond=["NoSuchClass"])


def test_generate_continues_a_context_token_grid(k600):
    _, model, golden = k600
    config = model.config
    context = golden["context_ids"].view(-1, config.context_frames, *config.grid[1:])
    grid = generate(model, cond=context, top_k=1)
    assert torch.equal(grid[:, : config.context_frames], context)
    assert torch.equal(grid[:, config.context_frames:].flatten(1), golden["greedy_continuation"])


# ---------------------------------------------------------------- bad files


def _rewrite(src, dst, change):
    data = torch.load(src, weights_only=False)
    change(data)
    torch.save(data, dst)
    return dst


def test_bad_transformer_files(tmp_path):
    ucf = DATA / "ucf_hybrid_tiny.ckpt"
    with pytest.raises(UserError, match="not a readable"):
        cut = tmp_path / "cut.ckpt"
        cut.write_bytes(ucf.read_bytes()[:4096])
        load_official_transformer(cut)
    with pytest.raises(UserError, match="tokenizer file"):
        tok = tmp_path / "magvit2.pt"
        torch.save({"model_state_dict": {"module.encoder_layers.0.conv.bias": torch.zeros(2)}}, tok)
        load_official_transformer(tok)

    def drop_field(data):
        del data["hyper_parameters"]["args"].n_head

    with pytest.raises(UserError, match="lack n_head"):
        load_official_transformer(_rewrite(ucf, tmp_path / "nofield.ckpt", drop_field))

    def unknown_layout(data):
        data["hyper_parameters"]["args"].cond_stage_key = "label"

    with pytest.raises(UserError, match="unknown layout"):
        load_official_transformer(_rewrite(ucf, tmp_path / "layout.ckpt", unknown_layout))

    def not_namespace(data):
        data["hyper_parameters"]["args"] = vars(data["hyper_parameters"]["args"])

    with pytest.raises(UserError, match="Namespace"):
        load_official_transformer(_rewrite(ucf, tmp_path / "dict.ckpt", not_namespace))


def test_only_namespace_is_allowed_beyond_plain_data(tmp_path):
    data = torch.load(DATA / "k600_tiny.ckpt", weights_only=False)
    # any class beyond Namespace (here a harmless one) must be refused by weights_only loading
    data["extra"] = argparse.Namespace(obj=PurePosixPath("x"))
    path = tmp_path / "evil.ckpt"
    torch.save(data, path)
    with pytest.raises(UserError, match="not a readable"):
        load_official_transformer(path)


def test_prefixes_and_dtypes(tmp_path):
    """module. prefixes, a frozen tokenizer under first_stage_model. and fp16 tensors all load."""
    data = torch.load(DATA / "k600_tiny.ckpt", weights_only=False)
    state = {f"module.{k}": v.half() for k, v in data["state_dict"].items()}
    state["module.first_stage_model.encoder_layers.0.conv.weight"] = torch.zeros(4, 3, 3, 3, 3)
    data["state_dict"] = state
    path = tmp_path / "k600_fp16.ckpt"
    torch.save(data, path)
    model = load_official_transformer(path)
    reference = load_official_transformer(DATA / "k600_tiny.ckpt")
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert a.dtype == b.dtype and torch.allclose(a, b.half().to(b.dtype)), name


def test_legacy_format_file_loads(tmp_path):
    """torch's pre-zip format cannot be memory-mapped; it is read the plain way."""
    data = torch.load(DATA / "k600_tiny.ckpt", weights_only=False)
    path = tmp_path / "legacy.ckpt"
    torch.save(data, path, _use_new_zipfile_serialization=False)
    model = load_official_transformer(path)
    reference = load_official_transformer(DATA / "k600_tiny.ckpt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
