"""The reference layouts as NBPConfig settings, on small random models: cache == recompute, masks, validation."""

from __future__ import annotations

import pytest
import torch

from nbp.config import NBPConfig
from nbp.errors import UserError
from nbp.masks import block_causal_mask
from nbp.model import NBPTransformer
from nbp.sampler import sample_sequence
from nbp.sampling_controls import SamplingControls

SMALL = dict(vocab_size=50, grid=(3, 4, 4), block=(1, 1, 4), n_layer=2, n_head=2, n_embd=16, dropout=0.0)
UCF_LIKE = dict(condition="class", num_classes=3, class_text_len=3, first_block="hybrid", hybrid_placeholders=True,
                video_offset=12)
K600_LIKE = dict(condition="frames", context_frames=1, first_block="context")


def _model(layout: dict, seed: int = 0) -> NBPTransformer:
    torch.manual_seed(seed)
    model = NBPTransformer(NBPConfig(**SMALL, **layout)).eval()
    if layout.get("class_text_len"):
        model.class_text.copy_(torch.randint(4, 12, model.class_text.shape))
    return model


def _cond(model, batch=2):
    if model.config.condition == "class":
        return torch.arange(batch) % model.config.num_classes
    return torch.randint(model.config.vocab_size, (batch, model.config.prefix_len))


@pytest.mark.parametrize("layout", [UCF_LIKE, K600_LIKE], ids=["ucf", "k600"])
def test_cached_decoding_samples_what_recomputing_samples(layout):
    model = _model(layout)
    cond = _cond(model)
    controls = SamplingControls(temperature=1.0, top_k=20)
    runs = [sample_sequence(model, cond, controls=controls, generator=torch.Generator().manual_seed(3), decoder=d)
            for d in ("cache", "recompute")]
    assert torch.equal(runs[0][0], runs[1][0])
    assert runs[0][1].model_calls == model.config.decode_steps


def test_context_mode_is_block_causal_from_the_first_position():
    config = NBPConfig(**SMALL, **K600_LIKE)
    mask = block_causal_mask(config.mask_spec)
    L = config.block_len
    assert config.seq_len == 16 + 32 - L and mask.shape == (config.seq_len,) * 2
    groups = torch.arange(config.seq_len) // L
    assert torch.equal(mask, groups[None, :] <= groups[:, None])


def test_placeholders_and_text_prefix_reach_the_logits():
    model = _model(UCF_LIKE)
    video, cond = torch.randint(50, (2, 48)), torch.tensor([0, 1])
    before = model(video, cond)
    with torch.no_grad():
        model.placeholder_emb.add_(torch.randn_like(model.placeholder_emb))  # not a constant: LayerNorm removes those
    after = model(video, cond)
    L, K = model.block_len, model.start_len
    # placeholders sit in the first video input block [v_{K-1}, placeholders], whose outputs predict video block 1
    change = (before - after).abs().amax(dim=(0, 2))
    assert change[:K].max() < 1e-6 and change[K:K + L].min() > 1e-5
    other_text = model(video, torch.tensor([2, 1]))  # only the first sequence changes class
    assert (other_text[0] - after[0]).abs().max() > 1e-5 and torch.allclose(other_text[1], after[1], atol=1e-6)


@pytest.mark.parametrize("bad,field", [
    (dict(condition="class", first_block="context"), "first_block"),
    (dict(condition="class", num_classes=3, hybrid_placeholders=True), "hybrid_placeholders"),
    (dict(condition="none", class_text_len=4), "class_text_len"),
    (dict(condition="class", num_classes=3, class_names=("a", "b")), "class_names"),
    (dict(condition="class", video_offset=-1), "video_offset"),
])
def test_impossible_reference_layouts_name_the_field(bad, field):
    with pytest.raises(UserError, match=f"NBPConfig.{field}="):
        NBPConfig(**SMALL, **bad)
