"""Step metrics are logged only on the steps Lightning writes, and those values are current."""

from types import SimpleNamespace

import lightning as L

from lightning_modules.log_cadence import writes_step_metrics
from lightning_modules.tokenizer_module import TokenizerModule
from lightning_modules.video_data import VideoDataModule
from nbp.data import DatasetConfig
from tokenizer.losses import LossConfig

TINY = dict(base_channels=8, norm_groups=4)


def test_writes_step_metrics_follows_log_every_n_steps():
    trainer = SimpleNamespace(log_every_n_steps=3, should_stop=False)
    assert [writes_step_metrics(trainer, done) for done in range(7)] == [False, False, True, False, False, True, False]
    assert writes_step_metrics(SimpleNamespace(log_every_n_steps=3, should_stop=True), 0)  # the last step
    assert not writes_step_metrics(SimpleNamespace(log_every_n_steps=0, should_stop=False), 2)  # logging off
    assert writes_step_metrics(None, 5)  # a module used without a trainer


def test_tokenizer_writes_current_values_every_n_steps(tmp_path, synthetic_root):
    data = VideoDataModule(DatasetConfig(kind="synthetic", root=str(synthetic_root), split="train", frames=5, size=16),
                           batch_size=2)
    module = TokenizerModule(preset="synthetic", overrides=TINY, lr=3e-3, loss=LossConfig(disc_weight=0.0))
    trainer = L.Trainer(default_root_dir=tmp_path, max_steps=9, limit_val_batches=0, log_every_n_steps=3,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        logger=L.pytorch.loggers.CSVLogger(tmp_path), accelerator="cpu")
    calls = []
    log_dict = module.log_dict
    module.log_dict = lambda *args, **kwargs: (calls.append(int(module.generator_steps)), log_dict(*args, **kwargs))
    trainer.fit(module, data)
    assert calls == [3, 6, 9]  # only the written steps pay for logging (generator_steps counts from 1 here)
    rows = [line.split(",") for line in next(tmp_path.rglob("metrics.csv")).read_text().splitlines()]
    header = rows[0]
    written = [(int(r[header.index("step")]), float(r[header.index("train/loss")]))
               for r in rows[1:] if r[header.index("train/loss")]]
    assert [step for step, _ in written] == [2, 5, 8]
    assert len({loss for _, loss in written}) == 3  # each written value is that step's, not a stale one
