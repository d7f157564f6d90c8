"""Checks against the real public I3D files; they run only where a user has put the weights in place."""

import pytest
import torch

from nbp.metrics.detector import KNOWN_FILES, cache_dir, load_detector_file


def _cached(kind: str):
    path = cache_dir() / KNOWN_FILES[kind].filename
    return path if path.is_file() else None


@pytest.mark.weights
@pytest.mark.skipif(_cached("state_dict") is None, reason="i3d_pretrained_400.pt is not in the nbp cache folder")
def test_public_state_dict_loads_strictly_and_gives_logits():
    detector = load_detector_file(_cached("state_dict"))
    with torch.no_grad():
        out = detector(torch.zeros(1, 3, 16, 224, 224))
    assert out.shape == (1, 400) and torch.isfinite(out).all()


@pytest.mark.weights
@pytest.mark.skipif(_cached("torchscript") is None, reason="i3d_torchscript.pt is not in the nbp cache folder")
def test_public_torchscript_detector_gives_logits():
    detector = load_detector_file(_cached("torchscript"))
    with torch.no_grad():
        out = detector(torch.full((1, 3, 16, 64, 64), 128.0), rescale=True, resize=True)
    assert out.shape == (1, 400) and torch.isfinite(out).all()
