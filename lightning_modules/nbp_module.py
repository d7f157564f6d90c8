"""NBPModule: trains the next-block-prediction transformer on token grids.

    nbp train fit --config configs/nbp/synthetic.yaml

The model is built from an NBPConfig preset plus overrides given in YAML
(`model.init_args.preset: tiny`, `model.init_args.overrides: {block: [1, 1, 8], ...}`).
`vocab_size`, `grid` and `num_classes` may be left out; they are then read from the data
(the token cache's meta.json) at setup and written back into the saved hyperparameters,
so every checkpoint can rebuild its model without the YAML:

- `NBPModule.load_model("last.ckpt" or "model.pt")` -> an `NBPTransformer` in eval mode;
- at the end of `fit`, `model.pt` ({"config": dict, "state_dict": ...}, loadable with
  `torch.load(weights_only=True)`) is written atomically next to the checkpoints.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lightning_modules.log_cadence import writes_step_metrics
from nbp.optim import announce_kernel, build_adamw, build_warmup_cosine
from nbp.config import NBPConfig
from nbp.errors import UserError
from nbp.model_file import load_model_file, save_model_file
from nbp.model import NBPTransformer, token_cross_entropy

FILLED_FROM_DATA = ("vocab_size", "grid", "num_classes", "window")
# NBPConfig fields that only change how a model trains or runs, not what its weights mean.
RUNTIME_FIELDS = ("attn_backend", "dropout", "p_uncond", "grad_checkpointing", "compile")


def given_overrides(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The overrides actually given: `null` (which the command line passes on as the string 'None')
    means "not given", so a derived field is then read from the data and any other field keeps its preset."""
    return {k: v for k, v in (overrides or {}).items() if v is not None and v not in ("None", "null")}


class NBPModule(L.LightningModule):
    def __init__(self, preset: str = "tiny", overrides: dict[str, Any] | None = None, lr: float = 6e-4,
                 weight_decay: float = 0.01, betas: tuple[float, float] = (0.9, 0.95), warmup_steps: int = 1000,
                 total_steps: int | None = None, min_lr_ratio: float = 0.0, export_name: str | None = "model.pt"):
        """
        Args:
            preset: NBPConfig preset ("tiny", "base", "xl", "3b").
            overrides: NBPConfig fields that differ from the preset (block, first_block, condition, ...).
            lr: AdamW peak learning rate (reached after warmup_steps).
            weight_decay: AdamW weight decay; it applies to the weights of Linear layers only.
            betas: AdamW betas.
            warmup_steps: linear warmup from 0 to lr; then cosine to lr * min_lr_ratio at total_steps.
            total_steps: length of the cosine; defaults to the Trainer's max_steps / estimated steps.
            min_lr_ratio: the learning rate at the end of the cosine, as a fraction of lr.
            export_name: file written next to the checkpoints at the end of fit (None: no export).
        """
        super().__init__()
        overrides = given_overrides(overrides)
        NBPConfig.check_names(preset, overrides)  # now, not after the trainer has started
        if lr <= 0 or weight_decay < 0 or warmup_steps < 0 or not 0.0 <= min_lr_ratio <= 1.0:
            raise UserError(f"NBPModule: invalid optimisation setting (lr={lr}, weight_decay={weight_decay}, "
                            f"warmup_steps={warmup_steps}, min_lr_ratio={min_lr_ratio}); need lr > 0, "
                            f"weight_decay >= 0, warmup_steps >= 0, 0 <= min_lr_ratio <= 1")
        self.save_hyperparameters()
        self.hparams.overrides = overrides
        self.model: NBPTransformer | None = None
        self.nbp_config: NBPConfig | None = None
        if all(k in overrides for k in ("vocab_size", "grid")):
            self._build(NBPConfig.from_preset(preset, **overrides))
        self._last_step_time: float | None = None

    # ------------------------------------------------------------------ model construction

    def _build(self, config: NBPConfig) -> None:
        self.nbp_config = config
        self.model = NBPTransformer(config)
        # The resolved config is what a checkpoint needs to rebuild the model without the YAML.
        self.hparams.nbp_config = config.to_dict()

    def _data_description(self) -> dict:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "describe"):
            return {}
        return datamodule.describe()

    def setup(self, stage: str) -> None:
        data = self._data_description()
        if self.model is None:
            overrides = dict(self.hparams.overrides)
            for key in FILLED_FROM_DATA:
                if key not in overrides and data.get(key) is not None:
                    overrides[key] = list(data[key]) if key == "grid" else data[key]
            missing = [k for k in ("vocab_size", "grid") if k not in overrides]
            if missing:
                raise UserError(f"NBPModule: {missing} not given in model.init_args.overrides and no data module "
                                f"to read them from")
            self.hparams.overrides = overrides
            self._build(NBPConfig.from_preset(self.hparams.preset, **overrides))
        self._check_data_matches(data)

    def check_data(self, datamodule) -> None:
        """Before training: the data can be described and agrees with every model field already fixed."""
        data = datamodule.describe() if hasattr(datamodule, "describe") else {}
        config = self.nbp_config
        if config is None:  # what setup will build: the given overrides, the rest from the data
            overrides = dict(self.hparams.overrides)
            for key in FILLED_FROM_DATA:
                if key not in overrides and data.get(key) is not None:
                    overrides[key] = list(data[key]) if key == "grid" else data[key]
            if not all(k in overrides for k in ("vocab_size", "grid")):
                return  # setup says what is missing
            config = NBPConfig.from_preset(self.hparams.preset, **overrides)
        self._check_data_matches(data, config)

    def _check_data_matches(self, data: dict, cfg: NBPConfig | None = None) -> None:
        """The fields the data fixes must agree with the model's; leave them out (or null) to take the data's."""
        cfg = cfg or self.nbp_config
        hint = "; leave it out (or null) in model.init_args.overrides to take it from the data"
        if data.get("grid") is not None and tuple(data["grid"]) != cfg.grid:
            raise UserError(f"the data has latent grid {list(data['grid'])} but the model config has grid "
                            f"{list(cfg.grid)}{hint}, or re-tokenize")
        if data.get("vocab_size") is not None and data["vocab_size"] != cfg.vocab_size:
            # A larger model vocabulary would train, but nbp sample then refuses the tokenizer pairing.
            raise UserError(f"the data's tokenizer has {data['vocab_size']} codes but the model vocab_size is "
                            f"{cfg.vocab_size}{hint}")
        if "window" in data and data["window"] != cfg.window:
            given = f"windows of {data['window']} latent frames" if data["window"] else "whole clips"
            raise UserError(f"the data gives {given} but the model config has window={cfg.window}{hint}")
        n = data.get("num_classes")
        if cfg.condition == "class" and n is not None and n != cfg.num_classes:
            raise UserError(f"the data has {n} classes but the model num_classes is {cfg.num_classes}{hint}")

    # ------------------------------------------------------------------ the objective

    def split_batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token grids -> (generated tokens (B, N) in sequence order, the condition for the model)."""
        cfg = self.nbp_config
        tokens = batch["tokens"]
        if cfg.condition == "frames":
            context = cfg.context_layout.grid_to_seq(tokens[:, : cfg.context_frames])
            return cfg.layout.grid_to_seq(tokens[:, cfg.context_frames:]), context
        video = cfg.layout.grid_to_seq(tokens)
        return video, (batch["label"] if cfg.condition == "class" else None)

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        # Checked while the labels are still on the CPU: on a GPU the same check would wait for the
        # device at every step.
        if self.nbp_config is not None and self.nbp_config.condition == "class" and "label" in batch:
            if (batch["label"] < 0).any():
                raise UserError("a class-conditional model got unlabelled videos (label -1); "
                                "use condition 'none' or a labelled dataset")
        return batch

    def _loss_and_metrics(self, batch: dict, with_accuracy: bool = True
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        """Loss, top-1/top-5 accuracy (skipped when not wanted: the top-k costs ~5 % of a small CPU step)."""
        video, cond = self.split_batch(batch)
        logits = self.model(video, cond, batch.get("clip_start"))
        loss = token_cross_entropy(logits, video)
        flat_logits, targets = logits.reshape(-1, logits.shape[-1]), video.reshape(-1)
        if not with_accuracy:
            return loss, {}, targets.numel()
        with torch.no_grad():
            top5 = flat_logits.topk(min(5, flat_logits.shape[-1]), dim=-1).indices
            metrics = {"top1": (top5[:, 0] == targets).float().mean(),
                       "top5": (top5 == targets[:, None]).any(dim=-1).float().mean()}
        return loss, metrics, targets.numel()

    @property
    def tokens_per_sample(self) -> int:
        """Generated (loss-bearing) tokens per video; read by the throughput monitor."""
        return self.nbp_config.num_tokens if self.nbp_config is not None else 0

    def forward(self, video: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(video, cond)

    def training_step(self, batch: dict, batch_idx: int):
        if batch["tokens"].shape[0] == 0:  # on-the-fly batch whose videos were all unreadable
            return None
        log_now = writes_step_metrics(self._trainer, self.trainer.global_step if self._trainer is not None else 0)
        loss, metrics, num_tokens = self._loss_and_metrics(batch, with_accuracy=log_now)
        if log_now:
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/top1", metrics["top1"])
            self.log("train/top5", metrics["top5"])
        self._log_throughput(num_tokens, log_now)
        return loss

    def _log_throughput(self, num_tokens: int, log_now: bool) -> None:
        # Wall time between consecutive steps: includes data loading and the optimizer step.
        now = time.perf_counter()
        if self._last_step_time is not None and log_now:
            seconds = now - self._last_step_time
            world = self.trainer.world_size if self._trainer is not None else 1
            self.log("train/tokens_per_s", num_tokens * world / max(seconds, 1e-9), prog_bar=True)
        self._last_step_time = now

    def on_train_epoch_start(self) -> None:
        self._last_step_time = None  # do not count validation or epoch set-up as training time

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: dict, prefix: str) -> None:
        if batch["tokens"].shape[0] == 0:
            return
        loss, metrics, _ = self._loss_and_metrics(batch)
        size = batch["tokens"].shape[0]
        self.log(f"{prefix}/loss", loss, batch_size=size, sync_dist=True)
        self.log(f"{prefix}/bits_per_token", loss / math.log(2), batch_size=size, prog_bar=True, sync_dist=True)
        self.log(f"{prefix}/top1", metrics["top1"], batch_size=size, sync_dist=True)
        self.log(f"{prefix}/top5", metrics["top5"], batch_size=size, sync_dist=True)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Per video: bits per generated token under the model (its compression of that video), and its label."""
        video, cond = self.split_batch(batch)
        logits = self.model(video, cond, batch.get("clip_start")).float()
        nll = token_cross_entropy(logits, video, reduction="none").mean(dim=1)
        return {"bits_per_token": nll / math.log(2), "label": batch["label"]}

    # ------------------------------------------------------------------ optimisation

    def _total_steps(self) -> int:
        if self.hparams.total_steps:
            return int(self.hparams.total_steps)
        if self._trainer is not None and self.trainer.max_steps and self.trainer.max_steps > 0:
            return int(self.trainer.max_steps)
        if self._trainer is not None:
            return int(self.trainer.estimated_stepping_batches)
        raise UserError("NBPModule: set total_steps or trainer.max_steps so the cosine schedule has a length")

    def configure_optimizers(self):
        hp = self.hparams
        total = self._total_steps()
        if hp.warmup_steps >= total:
            raise UserError(f"model.init_args.warmup_steps={hp.warmup_steps} is not shorter than the run ({total} "
                            f"optimizer steps), so the learning rate would never reach lr; lower warmup_steps")
        clip = self.trainer.gradient_clip_val if self._trainer is not None else None
        kernel = announce_kernel(self._trainer, list(self.model.parameters()), clip)
        optimizer = build_adamw(self.model, lr=hp.lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas),
                                kernel=kernel)
        scheduler = build_warmup_cosine(optimizer, hp.warmup_steps, total, hp.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Under FSDP each rank holds a shard of every gradient: the norm must be reduced across ranks,
        # which only the root FSDP module's clip_grad_norm_ does (Lightning's FSDP plugin refuses "norm").
        root = self.trainer.strategy.model if self._trainer is not None else None
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm") and hasattr(root, "clip_grad_norm_"):
            root.clip_grad_norm_(gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ------------------------------------------------------------------ export and loading

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        stored = (checkpoint.get("hyper_parameters") or {}).get("nbp_config")
        if stored is None:
            raise UserError("--ckpt_path: the checkpoint is not one of NBPModule (no nbp_config in its hyperparameters)")
        ours = self.nbp_config.to_dict()
        differ = sorted(k for k, v in ours.items() if k not in RUNTIME_FIELDS and stored.get(k) != v)
        if differ:
            shown = ", ".join(f"{k}: checkpoint {stored.get(k)!r}, config {ours[k]!r}" for k in differ)
            raise UserError(f"--ckpt_path: the checkpoint's model differs from the config's ({shown}); "
                            f"use the config it was trained with")

    def on_fit_end(self) -> None:
        if not self.hparams.export_name or self._trainer is None:
            return
        # Collective under sharded strategies (FSDP gathers the full weights), so every rank calls it.
        state = self.trainer.strategy.lightning_module_state_dict()
        if not self.trainer.is_global_zero:
            return
        prefix = "model."
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        ckpt_cb = self.trainer.checkpoint_callback
        folder = Path(ckpt_cb.dirpath) if ckpt_cb is not None and ckpt_cb.dirpath else \
            Path(self.trainer.log_dir or self.trainer.default_root_dir)
        save_model_file(state, self.nbp_config, folder / self.hparams.export_name,
                        tokenizer=self._data_description().get("tokenizer"))

    @staticmethod
    def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> NBPTransformer:
        """Rebuild the transformer from a Lightning checkpoint of this module or from an exported model.pt."""
        return load_model_file(path, map_location)
