import json
import math
from pathlib import Path

import pytest
import torch

from nbp.errors import UserError
from nbp.files import sha256_file, torch_save_atomic
from nbp.metrics.detector import I3DDetector, load_detector_file
from nbp.metrics.i3d import InceptionI3d, pad_same, same_padding

# Keys and shapes of the public i3d_pretrained_400.pt (344 entries incl. 57 num_batches_tracked).
MANIFEST = json.loads((Path(__file__).parent / "i3d_400_state_dict_manifest.json").read_text())


def random_state_dict_from_manifest(with_tracked: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict built only from the manifest, with values that keep activations finite."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in MANIFEST["state_dict"]:
        if key.endswith("num_batches_tracked"):
            if with_tracked:
                state[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("conv3d.weight"):
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


def test_manifest_is_the_published_one():
    assert MANIFEST["num_entries"] == len(MANIFEST["state_dict"]) == 344
    params = sum(math.prod(s) for k, s in MANIFEST["state_dict"] if "running" not in k and "tracked" not in k)
    assert params == MANIFEST["total_parameters"] == sum(p.numel() for p in InceptionI3d().parameters())


def test_same_padding_follows_tensorflow():
    assert same_padding(224, 7, 2) == (2, 3)  # 224 % 2 == 0: total = 7 - 2 = 5
    assert same_padding(16, 7, 2) == (2, 3)
    assert same_padding(7, 3, 2) == (1, 1)  # 7 % 2 == 1: total = 3 - 1 = 2
    assert same_padding(8, 2, 2) == (0, 0)
    assert same_padding(9, 2, 2) == (0, 1)  # odd size: the extra pad goes to the back
    assert same_padding(5, 3, 1) == (1, 1)
    x = torch.ones(1, 1, 9, 7, 8)
    y = pad_same(x, (2, 3, 3), (2, 2, 1))
    assert y.shape == (1, 1, 10, 9, 10)
    assert y[0, 0, 9].abs().sum() == 0 and y[0, 0, :9, 0].abs().sum() == 0  # back of T, front of H are zeros
    assert torch.equal(y[0, 0, :9, 1:8, 1:9], x[0, 0])


def test_tf_same_output_sizes_through_the_stem():
    net = InceptionI3d()
    x = torch.zeros(1, 3, 16, 224, 224)
    x = net.Conv3d_1a_7x7(x)
    assert x.shape[2:] == (8, 112, 112)  # ceil(size / stride)
    assert net.MaxPool3d_2a_3x3(x).shape[2:] == (8, 56, 56)


@pytest.fixture(scope="module")
def manifest_state():
    return random_state_dict_from_manifest(with_tracked=True)


@pytest.mark.parametrize("with_tracked", [True, False])
def test_loads_manifest_state_dict_strictly(tmp_path, manifest_state, with_tracked):
    state = {k: v for k, v in manifest_state.items() if with_tracked or not k.endswith("num_batches_tracked")}
    assert len(state) == (344 if with_tracked else 287)
    path = tmp_path / "i3d_pretrained_400.pt"
    torch_save_atomic(state, path)
    detector = load_detector_file(path)
    assert isinstance(detector, I3DDetector) and detector.sha256 == sha256_file(path)
    loaded = detector.network.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_forward_returns_time_averaged_400_logits(manifest_state):
    net = InceptionI3d().eval()
    net.load_state_dict(manifest_state)
    x = torch.rand(1, 3, 16, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        out = net(x)
    assert out.shape == (1, 400) and torch.isfinite(out).all() and out.std() > 0
    with pytest.raises(ValueError, match="224"):
        net(torch.zeros(1, 3, 16, 128, 128))


def test_wrong_state_dict_is_one_line_user_error(tmp_path, manifest_state):
    state = dict(manifest_state)
    state["Mixed_5c.b0.conv3d.weight"] = torch.zeros(10, 832, 1, 1, 1)  # wrong shape
    del state["logits.conv3d.bias"]
    path = tmp_path / "bad.pt"
    torch_save_atomic(state, path)
    with pytest.raises(UserError, match="1 missing, e.g. logits.conv3d.bias") as err:
        load_detector_file(path)
    assert "Mixed_5c.b0.conv3d.weight (10, 832, 1, 1, 1) != (384, 832, 1, 1, 1)" in str(err.value)
    assert "\n" not in str(err.value)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        load_detector_file(tmp_path / "junk.pt")
