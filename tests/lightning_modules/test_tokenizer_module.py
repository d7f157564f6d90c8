"""TokenizerModule + VideoDataModule: a real (tiny) fit on real video files, GAN path included."""

import json

import lightning as L
import pytest
import torch

from lightning_modules.tokenizer_module import TokenizerModule
from lightning_modules.video_data import VideoDataModule
from nbp.data import DatasetConfig
from nbp.errors import UserError
from tokenizer import VideoTokenizer
from tokenizer.losses import LossConfig

TINY = dict(base_channels=8, channel_mults=[1, 1, 2], num_res_blocks=1, norm_groups=4, spatial_downsample=4,
            fsq_levels=[5, 5, 5])


def fit_tiny(tmp_path, synthetic_root, steps: int, disc_start: int):
    data = VideoDataModule(DatasetConfig(kind="synthetic", root=str(synthetic_root), split="train", frames=9, size=16),
                           batch_size=2, val_batch_size=3)
    module = TokenizerModule(preset="synthetic", overrides=TINY, lr=3e-3, betas=(0.9, 0.99),
                             loss=LossConfig(disc_weight=0.1, disc_start=disc_start, disc_channels=4, disc_layers=1),
                             export_path=str(tmp_path / "tokenizer.pt"), recon_videos=2)
    trainer = L.Trainer(default_root_dir=tmp_path, max_steps=steps, limit_val_batches=2, val_check_interval=steps // 2,
                        check_val_every_n_epoch=None, num_sanity_val_steps=0, log_every_n_steps=1, enable_progress_bar=False,
                        enable_model_summary=False, logger=L.pytorch.loggers.CSVLogger(tmp_path), accelerator="cpu")
    trainer.fit(module, data)
    return module, trainer


def test_fit_logs_metrics_writes_video_and_exports(tmp_path, synthetic_root):
    # 6 generator steps; the discriminator joins after 3, so the adaptive-weight path runs too.
    module, trainer = fit_tiny(tmp_path, synthetic_root, steps=9, disc_start=3)
    assert int(module.generator_steps) == 6  # Lightning counted 3 + 2 * 3 optimizer steps
    metrics = trainer.callback_metrics
    for key in ("val/psnr", "val/ssim", "val/code_usage", "val/perplexity", "train/adv", "train/disc"):
        assert key in metrics, key
    assert 0 < float(metrics["val/code_usage"]) <= 1 and float(metrics["val/psnr"]) > 0

    videos = list(tmp_path.rglob("recon/*.mp4"))
    assert videos, "a side-by-side reconstruction video is written at validation"
    import decord

    frames = decord.VideoReader(str(videos[0]))
    assert len(frames) == 9 and frames[0].shape[1] == 2 * 2 * 16  # 2 videos x (original | reconstruction)

    exported = VideoTokenizer.load(tmp_path / "tokenizer.pt")
    same = {k: v for k, v in module.tokenizer.state_dict().items()}
    for key, value in exported.state_dict().items():
        torch.testing.assert_close(value, same[key])
    # The Lightning checkpoint holds the config too, and loads as a tokenizer without Lightning.
    ckpt = next(tmp_path.rglob("*.ckpt"))
    from_ckpt = VideoTokenizer.load(ckpt)
    assert from_ckpt.config == exported.config
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert json.loads(json.dumps(hparams["loss"]))["disc_start"] == 3
    restored = TokenizerModule.load_from_checkpoint(ckpt)
    assert restored.loss_config == module.loss_config and int(restored.generator_steps) > 0


def test_training_reduces_the_loss(tmp_path, synthetic_root):
    module, trainer = fit_tiny(tmp_path, synthetic_root, steps=14, disc_start=10_000)
    rows = [line.split(",") for line in next(tmp_path.rglob("metrics.csv")).read_text().splitlines()]
    header = rows[0]
    col = header.index("train/loss")
    losses = [float(r[col]) for r in rows[1:] if r[col]]
    assert len(losses) >= 2 and losses[-1] < losses[0]


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="lr"):
        TokenizerModule(lr=0)
    with pytest.raises(UserError, match="batch_size"):
        VideoDataModule(DatasetConfig(kind="synthetic"), batch_size=0)
    with pytest.raises(UserError, match="unknown tokenizer preset"):
        TokenizerModule(preset="huge")


def test_colour_anchor_trains_its_readout_but_exports_only_the_tokenizer(tmp_path, synthetic_root):
    data = VideoDataModule(DatasetConfig(kind="synthetic", root=str(synthetic_root), split="train", frames=9, size=16),
                           batch_size=2, val_batch_size=2)
    module = TokenizerModule(preset="synthetic", overrides=TINY, lr=3e-3, betas=(0.9, 0.99),
                             loss=LossConfig(disc_weight=0.0, anchor_weight=1.0),
                             export_path=str(tmp_path / "tokenizer.pt"), recon_videos=1)
    before = module.anchor_readout.weight.detach().clone()
    trainer = L.Trainer(default_root_dir=tmp_path, max_steps=4, limit_val_batches=1, val_check_interval=4,
                        check_val_every_n_epoch=None, num_sanity_val_steps=0, log_every_n_steps=1,
                        enable_progress_bar=False, enable_model_summary=False, logger=False, accelerator="cpu")
    trainer.fit(module, data)
    assert "train/anchor" in trainer.callback_metrics
    assert not torch.equal(before, module.anchor_readout.weight), "the readout is optimised with the generator"

    exported = torch.load(tmp_path / "tokenizer.pt", weights_only=True)
    assert not any("anchor" in key for key in exported["state_dict"])
    assert VideoTokenizer.load(tmp_path / "tokenizer.pt").config == module.config
    assert VideoTokenizer.load(next(tmp_path.rglob("*.ckpt"))).config == module.config
