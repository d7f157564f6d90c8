"""Tokenizer training losses: L1 + L2 reconstruction, quantizer auxiliary loss, optional perceptual
loss, optional colour anchor, and the hinge GAN losses with the adaptive generator weight from the
VQGAN line of work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenizer.errors import UserError


@dataclass
class LossConfig:
    l1_weight: float = 1.0  # pixel L1 reconstruction loss
    l2_weight: float = 1.0  # pixel squared-error reconstruction loss
    # Weight of the quantizer's own loss (LFQ entropy, VQ commitment; FSQ has none).
    quantizer_weight: float = 1.0
    # Perceptual loss: only with a user-supplied VGG16 weight file (nothing is downloaded).
    perceptual_weight: float = 0.0
    perceptual_weights: str | None = None  # path of a torchvision vgg16 state dict for the perceptual loss
    # Colour anchor: a linear readout of every token's code must give the mean colour of the pixels
    # that token covers (see `patch_means`). It makes each code carry its own patch's colour instead
    # of spreading it over neighbouring codes, which is what lets a small transformer keep an
    # object's colour from one latent frame to the next. Costs some PSNR; 0 switches it off.
    anchor_weight: float = 0.0
    # Extra squared error on the pixels next to an edge of the target (see `edge_map`): small objects on
    # flat backgrounds are mostly edge, and a plain mean over all pixels leaves their corners to the last
    # steps of training. 0 switches it off.
    edge_weight: float = 0.0
    # Adversarial loss: off until `disc_start` generator steps, then scaled by the adaptive weight.
    disc_weight: float = 0.1
    disc_start: int = 10_000  # generator steps before the discriminator joins
    disc_channels: int = 64  # width of the 3D PatchGAN discriminator's first layer
    disc_layers: int = 3  # strided layers of the discriminator
    adaptive_weight_max: float = 1e4  # upper clamp of the VQGAN adaptive weight (ratio of gradient norms)

    def __post_init__(self) -> None:
        for name in ("l1_weight", "l2_weight", "quantizer_weight", "perceptual_weight", "anchor_weight",
                     "edge_weight", "disc_weight"):
            if getattr(self, name) < 0:
                raise UserError(f"LossConfig.{name}={getattr(self, name)} is invalid; weights must be >= 0")
        if self.l1_weight == 0 and self.l2_weight == 0 and self.perceptual_weight == 0:
            raise UserError("LossConfig: l1_weight, l2_weight and perceptual_weight are all 0; nothing would be reconstructed")
        if self.perceptual_weight > 0 and not self.perceptual_weights:
            raise UserError(f"LossConfig.perceptual_weight={self.perceptual_weight} needs perceptual_weights "
                            "(a VGG16 state dict file you supply; nothing is downloaded)")
        if self.disc_start < 0 or self.disc_channels < 1 or self.disc_layers < 1:
            raise UserError(f"LossConfig: disc_start={self.disc_start} must be >= 0, disc_channels={self.disc_channels} "
                            f"and disc_layers={self.disc_layers} >= 1")

    @property
    def uses_discriminator(self) -> bool:
        return self.disc_weight > 0


def reconstruction_losses(recon: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, L2) means over all pixels, computed in float32."""
    diff = recon.float() - target.float()
    return diff.abs().mean(), diff.pow(2).mean()


def edge_map(video: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, H, W) in [0, 1]: how strongly each pixel of a (B, C, T, H, W) video in [-1, 1] lies on an
    edge of its own frame: the largest colour step (any channel) to its four neighbours, halved."""
    video = video.float()
    dy = (video[..., 1:, :] - video[..., :-1, :]).abs().amax(dim=1, keepdim=True)
    dx = (video[..., :, 1:] - video[..., :, :-1]).abs().amax(dim=1, keepdim=True)
    steps = torch.zeros_like(video[:, :1])
    for step, before, after in ((dy, (..., slice(None, -1), slice(None)), (..., slice(1, None), slice(None))),
                                (dx, (..., slice(None), slice(None, -1)), (..., slice(None), slice(1, None)))):
        steps[before] = torch.maximum(steps[before], step)  # the pixel on each side of a step is on the edge
        steps[after] = torch.maximum(steps[after], step)
    return (steps / 2).clamp(max=1.0)


def edge_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error weighted by `edge_map(target)`, as a mean over all pixels."""
    return (edge_map(target) * (recon.float() - target.float()).pow(2)).mean()


def patch_means(video: torch.Tensor, time_factor: int, space_factor: int) -> torch.Tensor:
    """Mean colour of the pixels behind every token: (B, C, T, H, W) -> (B, C, T', H', W').

    Follows the causal tokenizer's grid: the first latent frame covers frame 0 alone, every
    later one the next `time_factor` frames; each token covers a space_factor^2 pixel square.
    """
    first = F.avg_pool3d(video[:, :, :1].float(), (1, space_factor, space_factor))
    rest = video[:, :, 1:].float()
    if rest.shape[2] == 0:
        return first
    return torch.cat([first, F.avg_pool3d(rest, (time_factor, space_factor, space_factor))], dim=2)


def anchor_loss(readout: torch.Tensor, video: torch.Tensor, time_factor: int, space_factor: int) -> torch.Tensor:
    """Mean squared error between a per-token colour readout (B, C, T', H', W') and `patch_means`."""
    return (readout.float() - patch_means(video, time_factor, space_factor)).pow(2).mean()


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean())


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.float().mean()


def adaptive_weight(rec_loss: torch.Tensor, adv_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float = 1e4) -> torch.Tensor:
    """||grad rec|| / ||grad adv|| at the decoder's last layer (VQGAN), so neither loss drowns the other."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    adv_grad = torch.autograd.grad(adv_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (adv_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()
