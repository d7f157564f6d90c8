"""Window training: windows of long-clip token caches (offsets, clip-start flag) and a window model
that learns from the flag what only the flag can tell it."""

import lightning as L
import numpy as np
import pytest
import torch

from lightning_modules.nbp_module import NBPModule
from lightning_modules.token_data import TokenDataModule
from nbp.errors import UserError
from nbp.token_cache import TokenCache
from nbp.token_windows import TokenWindows, window_offsets
from tests.token_caches import write_token_cache

CLIP = (7, 2, 2)  # latent frames of the long clips
VOCAB, CLASSES = 8, 3
SMALL = dict(n_layer=2, n_head=2, n_embd=32, dropout=0.0, p_uncond=0.0)


def write_long_cache(root, n=24, clip=CLIP):
    """Frame 0 of every clip is all token 1 (what a causal tokenizer makes of one pixel frame); later
    frames are all token 2 + label. A window's first frame is then 1 or 2 + label: only the clip-start
    flag says which."""
    labels = np.arange(n) % CLASSES
    ids = np.broadcast_to((2 + labels)[:, None, None, None], (n, *clip)).copy()
    ids[:, 0] = 1
    return write_token_cache(root, ids, labels, VOCAB, CLASSES, frames=1 + 4 * (clip[0] - 1), resolution=(8, 8),
                             shard_size=10)


@pytest.fixture(scope="module")
def long_cache(tmp_path_factory):
    return write_long_cache(tmp_path_factory.mktemp("long"))


def test_window_offsets():
    assert window_offsets(17, 5, "all") == list(range(13))
    assert window_offsets(17, 5, "fixed") == [0, 6, 12]
    assert window_offsets(5, 5, "fixed") == [0]


def test_training_windows_are_every_offset_of_every_clip_and_held_out_ones_fixed(long_cache):
    clips = TokenCache(long_cache)
    train = TokenWindows(clips, CLIP[0], 3, "all")
    assert len(train) == len(clips) * 5
    seen = {}
    for i in range(len(train)):
        item = train[i]
        assert item["tokens"].shape == (3, 2, 2)
        clip, first = divmod(i, 5)
        seen.setdefault(clip, []).append(first)
        assert torch.equal(item["tokens"], clips[clip]["tokens"][first:first + 3])
        assert item["clip_start"] == (int(item["tokens"][0, 0, 0]) == 1) == (first == 0)
        assert item["label"] == clips[clip]["label"]
    assert all(offsets == list(range(5)) for offsets in seen.values())
    held_out = TokenWindows(clips, CLIP[0], 3, "fixed")
    firsts = [[int(held_out[3 * c + k]["tokens"][0, 0, 0]) for k in range(3)] for c in range(2)]
    assert firsts == [[1, 2, 2], [1, 3, 3]]  # start, middle, end of clip 0 (label 0) and clip 1 (label 1)
    assert [held_out[k]["clip_start"] for k in range(6)] == [True, False, False] * 2


def test_data_module_batches_windows_with_their_flags(long_cache):
    data = TokenDataModule(train_cache=str(long_cache), val_cache=str(long_cache), batch_size=8, window=3)
    assert data.describe()["grid"] == (3, 2, 2) and data.describe()["window"] == 3
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["tokens"].shape == (8, 3, 2, 2) and batch["clip_start"].dtype == torch.bool
    assert torch.equal(batch["clip_start"], batch["tokens"][:, 0, 0, 0] == 1)
    flags = torch.cat([b["clip_start"] for b in data.val_dataloader()])
    assert flags.tolist() == [True, False, False] * 24  # deterministic: the same every time


def test_window_model_learns_what_only_the_clip_start_flag_tells(long_cache, tmp_path):
    torch.manual_seed(0)
    module = NBPModule(preset="tiny", overrides=dict(block=[1, 1, 2], condition="class", **SMALL),
                       lr=3e-3, warmup_steps=5)
    data = TokenDataModule(train_cache=str(long_cache), val_cache=str(long_cache), batch_size=16, window=3)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=80, default_root_dir=tmp_path, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        enable_checkpointing=False)
    trainer.fit(module, datamodule=data)
    assert module.nbp_config.window == 3 and module.nbp_config.grid == (3, 2, 2)
    model = module.model.eval()
    cfg = model.config
    labels = torch.tensor([0, 1, 2])
    for start in (True, False):
        first = torch.full((3, 1, 2, 2), 1) if start else (2 + labels).view(3, 1, 1, 1).expand(3, 1, 2, 2)
        grid = torch.cat([first, (2 + labels).view(3, 1, 1, 1).expand(3, 2, 2, 2)], dim=1)
        logits = model(cfg.layout.grid_to_seq(grid), labels, clip_start=torch.full((3,), start))
        assert torch.equal(logits[:, :4].argmax(-1), cfg.layout.grid_to_seq(grid)[:, :4])


def test_window_settings_that_cannot_work_are_one_clear_error(long_cache, tmp_path):
    with pytest.raises(UserError, match="TokenDataModule.window=1"):
        TokenDataModule(train_cache=str(long_cache), window=1)
    with pytest.raises(UserError, match="only with train_cache"):
        TokenDataModule(tokenizer="t.pt", train_data={"kind": "synthetic"}, window=3)
    with pytest.raises(UserError, match="longer than the clips"):
        TokenDataModule(train_cache=str(long_cache), window=9).describe()
    plain = NBPModule(preset="tiny", overrides=dict(block=[1, 1, 2], window=0, **SMALL))
    data = TokenDataModule(train_cache=str(long_cache), window=3)
    with pytest.raises(UserError, match="the data gives windows of 3 latent frames but the model config has window=0"):
        plain.check_data(data)


@pytest.mark.parametrize("condition", [dict(condition="none"), dict(condition="frames", context_frames=1)],
                         ids=["unconditional", "frame_prediction"])
def test_every_condition_trains_on_windows(long_cache, tmp_path, condition):
    torch.manual_seed(0)
    module = NBPModule(preset="tiny", overrides=dict(block=[1, 1, 2], **condition, **SMALL), lr=3e-3, warmup_steps=2)
    data = TokenDataModule(train_cache=str(long_cache), val_cache=str(long_cache), batch_size=8, window=3)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=30, default_root_dir=tmp_path, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        enable_checkpointing=False)
    before = trainer.validate(module, datamodule=data, verbose=False)[0]["val/loss"]
    trainer.fit(module, datamodule=data)
    after = trainer.validate(module, datamodule=data, verbose=False)[0]["val/loss"]
    assert module.nbp_config.window == 3 and after < 0.5 * before
