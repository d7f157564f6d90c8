"""TokenizerModule: trains the VideoTokenizer with a PatchGAN discriminator (manual optimization).

Each training batch: one generator update (L1 + L2 + quantizer loss [+ perceptual] [+ adaptive
weight * adversarial]) and, once the discriminator is on, one discriminator update (hinge).
Validation logs PSNR, SSIM, codebook usage and perplexity, and writes original | reconstruction
side by side as an mp4 into the log directory. The tokenizer file (`VideoTokenizer.load`) is
written to `export_path` after every validation and at the end of training.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning as L
import torch
from torchmetrics import MeanMetric, Metric

from lightning_modules.log_cadence import writes_step_metrics
from nbp.optim import announce_kernel, kernel_flag
from nbp.metrics.frame_quality import frame_ssim
from nbp.errors import UserError
from nbp.pixels import model_to_unit, to_model
from tokenizer import TokenizerConfig, VideoTokenizer
from tokenizer.discriminator import PatchDiscriminator3d
from tokenizer.losses import (LossConfig, adaptive_weight, anchor_loss, edge_loss, generator_adversarial_loss,
                              hinge_discriminator_loss, reconstruction_losses)
from tokenizer.metrics import code_histogram, codebook_stats, video_psnr


class CodeCounts(Metric):
    """Histogram of code ids over an epoch, summed across processes."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.add_state("counts", torch.zeros(vocab_size, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, ids: torch.Tensor) -> None:
        self.counts += code_histogram(ids, self.counts.numel())

    def compute(self) -> torch.Tensor:
        return self.counts


def initial_weights(path: str, config: TokenizerConfig) -> dict[str, torch.Tensor]:
    """Weights to fine-tune from: our tokenizer file (its config must equal `config`) or a released reference file."""
    from nbp.official.files import read_torch_file
    from nbp.official.hub import resolve
    from nbp.official.tokenizer import convert_tokenizer_state
    from tokenizer.model import check_same_config, read_tokenizer_file

    local = resolve(path)
    data = read_torch_file(local, "tokenizer file")
    if isinstance(data, dict) and "model_state_dict" in data:
        if config.arch != "magvit2":
            raise UserError(f"model.init_args.init_from={path} is a reference MAGVIT-v2 file; it needs "
                            f"model.init_args.preset: magvit2 (the preset has arch={config.arch!r})")
        return convert_tokenizer_state(data["model_state_dict"])
    file_config, state = read_tokenizer_file(local)
    check_same_config(config, file_config, path)
    return state


class TokenizerModule(L.LightningModule):
    def __init__(self, preset: str = "synthetic", overrides: dict | None = None, loss: LossConfig | None = None,
                 lr: float = 1e-4, disc_lr: float | None = None, betas: tuple[float, float] = (0.5, 0.9),
                 warmup_steps: int = 0, grad_clip: float | None = 1.0, export_path: str | None = None,
                 recon_videos: int = 4, init_from: str | None = None):
        """
        Args:
            preset: TokenizerConfig preset ("synthetic", "ucf101", "k600", "magvit2").
            overrides: TokenizerConfig fields that differ from the preset.
            loss: the training losses (LossConfig fields).
            lr: Adam learning rate of the tokenizer.
            disc_lr: learning rate of the discriminator (None: lr).
            betas: Adam betas of both optimizers.
            warmup_steps: linear learning-rate warmup, in generator steps.
            grad_clip: gradient norm clip of both optimizers (Lightning's trainer.gradient_clip_val does
                not apply to manual optimization); None: no clipping.
            export_path: where the tokenizer file is written at each validation and at the end (None: not written).
            recon_videos: validation videos written side by side with their reconstructions.
            init_from: starts a fresh run from a tokenizer file of the same config or a released reference
                file (magvit2_*.pt, local or hf://, with preset magvit2); a resumed run takes its checkpoint's weights.
        """
        super().__init__()
        self.automatic_optimization = False
        # A dict when restored from a checkpoint's hyper-parameters (stored as plain data, see below).
        loss = LossConfig(**loss) if isinstance(loss, dict) else (loss or LossConfig())
        if lr <= 0 or (disc_lr is not None and disc_lr <= 0):
            raise UserError(f"TokenizerModule: lr={lr} and disc_lr={disc_lr} must be > 0")
        if warmup_steps < 0:
            raise UserError(f"TokenizerModule.warmup_steps={warmup_steps} must be >= 0")
        # Plain types only, so the Lightning checkpoint stays loadable with weights_only=True.
        self.save_hyperparameters(ignore=["loss"])
        self.hparams["loss"] = dataclasses.asdict(loss)
        self.loss_config = loss
        self.config = TokenizerConfig.from_preset(preset, **(overrides or {}))
        self.tokenizer = VideoTokenizer(self.config)
        if init_from:
            self.tokenizer.load_checked_state_dict(initial_weights(init_from, self.config), init_from)
        self.discriminator = (PatchDiscriminator3d(self.config.in_channels, loss.disc_channels, loss.disc_layers)
                              if loss.uses_discriminator else None)
        # The colour anchor's readout is part of the loss, not of the tokenizer: it is trained with
        # the generator but never exported.
        self.anchor_readout = (torch.nn.Conv3d(self.config.latent_dim, self.config.in_channels, 1)
                               if loss.anchor_weight > 0 else None)
        self.perceptual = None
        if loss.perceptual_weight > 0:
            from tokenizer.perceptual import PerceptualLoss

            self.perceptual = PerceptualLoss(loss.perceptual_weights)
        # Generator updates so far; Lightning's global_step counts both optimizers' steps.
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))
        self.val_psnr, self.val_ssim = MeanMetric(), MeanMetric()
        self.val_codes = CodeCounts(self.config.vocab_size)

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self):
        max_steps = self.trainer.max_steps if self._trainer is not None else -1
        if self.hparams.warmup_steps and 0 < max_steps <= self.hparams.warmup_steps:
            raise UserError(f"model.init_args.warmup_steps={self.hparams.warmup_steps} is not shorter than the run "
                            f"(trainer.max_steps={max_steps}), so the learning rate would never reach lr; "
                            f"lower warmup_steps")
        trained = [self.tokenizer] + ([self.anchor_readout] if self.anchor_readout is not None else [])
        gen = self._adam(torch.nn.ModuleList(trained), self.hparams.lr, "generator optimizer")
        if self.discriminator is None:
            return gen
        return [gen, self._adam(self.discriminator, self.hparams.disc_lr or self.hparams.lr, "discriminator optimizer")]

    def _adam(self, module: torch.nn.Module, lr: float, name: str) -> torch.optim.Adam:
        params = list(module.parameters())
        kernel = announce_kernel(self._trainer, params, self.hparams.grad_clip, name)  # grad_clip: our own clip
        return torch.optim.Adam(params, lr=lr, betas=tuple(self.hparams.betas), **kernel_flag(kernel))

    def _optimizers(self):
        opts = self.optimizers()
        return (opts, None) if not isinstance(opts, list) else (opts[0], opts[1])

    def _warmup(self, optimizer) -> None:
        if self.hparams.warmup_steps:
            scale = min(1.0, (int(self.generator_steps) + 1) / self.hparams.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = self.hparams.lr * scale

    @property
    def discriminator_on(self) -> bool:
        return self.discriminator is not None and int(self.generator_steps) >= self.loss_config.disc_start

    def generator_loss(self, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        cfg = self.loss_config
        out = self.tokenizer(video)
        recon = out.video
        l1, l2 = reconstruction_losses(recon, video)
        rec = cfg.l1_weight * l1 + cfg.l2_weight * l2
        logs = {"l1": l1, "l2": l2}
        if cfg.edge_weight > 0:
            edges = edge_loss(recon, video)
            rec = rec + cfg.edge_weight * edges
            logs["edge"] = edges
        if self.perceptual is not None:
            perceptual = self.perceptual(recon.float(), video.float())
            rec = rec + cfg.perceptual_weight * perceptual
            logs["perceptual"] = perceptual
        total = rec + cfg.quantizer_weight * out.quantized.aux_loss
        logs["quantizer"] = out.quantized.aux_loss
        if self.anchor_readout is not None:
            anchor = anchor_loss(self.anchor_readout(out.quantized.codes), video, self.config.temporal_downsample,
                                 self.config.spatial_downsample)
            total = total + cfg.anchor_weight * anchor
            logs["anchor"] = anchor
        if self.discriminator_on:
            adv = generator_adversarial_loss(self.discriminator(recon))
            weight = adaptive_weight(rec, adv, self.tokenizer.decoder.last_layer_weight, cfg.adaptive_weight_max)
            total = total + cfg.disc_weight * weight * adv
            logs.update(adv=adv, adaptive_weight=weight)
        logs["loss"] = total
        return total, logs, recon

    def training_step(self, batch: dict, batch_idx: int):
        video = to_model(batch["video"])
        gen_opt, disc_opt = self._optimizers()
        disc_on = self.discriminator_on  # decided once, before the counter moves
        log_now = writes_step_metrics(self._trainer, int(self.generator_steps))

        self._warmup(gen_opt)
        total, logs, recon = self.generator_loss(video)
        gen_opt.zero_grad(set_to_none=True)
        self.manual_backward(total)
        self._clip(gen_opt)
        gen_opt.step()
        self.generator_steps += 1

        if disc_on:
            real = self.discriminator(video)
            fake = self.discriminator(recon.detach())
            d_loss = hinge_discriminator_loss(real, fake)
            disc_opt.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            self._clip(disc_opt)
            disc_opt.step()
            logs["disc"] = d_loss
        if log_now:
            self.log_dict({f"train/{k}": v.detach().float() for k, v in logs.items()}, prog_bar=False)
            self.log("train/loss_gen", total.detach(), prog_bar=True)
        return {"loss": total.detach()}

    def _clip(self, optimizer) -> None:
        if self.hparams.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")

    # ------------------------------------------------------------------ validation

    def on_validation_epoch_start(self) -> None:
        self._written_video = False
        # trainer.log_dir is a broadcast under DDP: every rank asks for it here, not only the rank that writes.
        self._recon_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "recon"

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        target = to_model(batch["video"])
        quantized = self.tokenizer.encode(target, return_latents=True)
        recon = self.tokenizer.decode_codes(quantized.codes).clamp(-1, 1)
        pred_u, target_u = model_to_unit(recon), model_to_unit(target)
        self.val_psnr.update(video_psnr(pred_u, target_u))
        self.val_ssim.update(frame_ssim(pred_u, target_u).mean(1).float())  # per video
        self.val_codes.update(quantized.ids)
        if not self._written_video and self.trainer.is_global_zero:
            self._write_recon_video(target_u, pred_u)
            self._written_video = True

    def on_validation_epoch_end(self) -> None:
        self._log_reconstruction("val")
        if not self.trainer.sanity_checking:
            self.export()

    def _log_reconstruction(self, prefix: str) -> None:
        stats = codebook_stats(self.val_codes.compute())
        self.log_dict({f"{prefix}/psnr": self.val_psnr.compute(), f"{prefix}/ssim": self.val_ssim.compute(),
                       f"{prefix}/code_usage": stats["code_usage"], f"{prefix}/perplexity": stats["perplexity"]},
                      prog_bar=True, sync_dist=False)
        for metric in (self.val_psnr, self.val_ssim, self.val_codes):
            metric.reset()

    # `nbp train test`: the same reconstruction metrics, logged as test/...
    on_test_epoch_start = on_validation_epoch_start

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self._log_reconstruction("test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """The token ids of each clip (B, T', H', W'), as `nbp tokenize` would store them."""
        return {"ids": self.tokenizer.encode(to_model(batch["video"])), "label": batch["label"]}

    def _write_recon_video(self, target: torch.Tensor, pred: torch.Tensor) -> None:
        try:
            from nbp.video_io import write_mp4
        except ImportError:
            return
        n = self.hparams.recon_videos
        side_by_side = torch.cat([target[:n], pred[:n]], dim=-1).cpu()  # original | reconstruction
        folder = self._recon_dir
        write_mp4(folder / f"step{int(self.generator_steps):07d}.mp4", side_by_side, fps=8)

    # ------------------------------------------------------------------ files

    def export(self) -> None:
        """Write the tokenizer file (weights + config) to `export_path`, from global rank 0."""
        path = self.hparams.export_path
        if path and (self.trainer is None or self.trainer.is_global_zero):
            self.tokenizer.save(path, extra={"generator_steps": int(self.generator_steps)})

    def on_train_end(self) -> None:
        self.export()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        stored = checkpoint.get("tokenizer_config")
        if stored is None:
            raise UserError("--ckpt_path: the checkpoint is not one of TokenizerModule (no tokenizer_config in it)")
        differ = {k: (v, stored.get(k)) for k, v in self.config.to_dict().items() if stored.get(k) != v}
        if differ:
            shown = ", ".join(f"{k}: checkpoint {old!r}, config {new!r}" for k, (new, old) in sorted(differ.items()))
            raise UserError(f"--ckpt_path: the checkpoint's tokenizer differs from the config's ({shown}); "
                            f"use the config it was trained with")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lets `VideoTokenizer.load` read the tokenizer straight out of this Lightning checkpoint.
        checkpoint["tokenizer_config"] = self.config.to_dict()
