"""The optional perceptual loss loads user-supplied VGG16 weights and nothing else."""

import pytest
import torch

from nbp.errors import UserError
from tokenizer.perceptual import PerceptualLoss, _vgg16_features


def test_perceptual_loss_with_user_weights(tmp_path):
    path = tmp_path / "vgg16.pt"
    features = _vgg16_features()
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()} | {"classifier.0.weight": torch.zeros(1)},
               path)
    loss = PerceptualLoss(path, max_frames=2)
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    assert loss(video, video).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(video, -video).item() > 0
    assert not any(p.requires_grad for p in loss.parameters())


def test_perceptual_loss_bad_files(tmp_path):
    with pytest.raises(UserError, match="do not exist"):
        PerceptualLoss(tmp_path / "missing.pt")
    wrong = tmp_path / "wrong.pt"
    torch.save({"0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(UserError, match="does not hold VGG16"):
        PerceptualLoss(wrong)
