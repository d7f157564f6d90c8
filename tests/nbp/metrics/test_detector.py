import pytest
import torch

from nbp.errors import UserError
from nbp.files import sha256_file
from nbp.metrics import detector as detector_mod
from nbp.metrics.detector import TorchScriptDetector, load_detector, load_detector_file
from tests.nbp.metrics.standins import ScriptedStandIn


@pytest.fixture
def scripted_file(tmp_path):
    path = tmp_path / "standin_torchscript.pt"
    torch.jit.save(torch.jit.script(ScriptedStandIn()), str(path))
    return path


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("NBP_CACHE", str(cache))
    monkeypatch.setenv("NBP_OFFLINE", "1")
    monkeypatch.delenv("NBP_FVD_DETECTOR", raising=False)
    return cache


def test_torchscript_file_is_loaded_and_called_with_the_documented_signature(scripted_file):
    det = load_detector_file(scripted_file)
    assert isinstance(det, TorchScriptDetector)
    assert det.describe() == {"kind": "torchscript", "path": str(scripted_file), "sha256": sha256_file(scripted_file)}
    x = torch.full((2, 3, 16, 8, 8), 0.25)
    out = det(x, rescale=True, resize=False)
    assert out.shape == (2, 400)
    # the stand-in echoes (rescale, resize, return_features): features are always requested
    assert out[0, :3].tolist() == [1.0, 0.0, 1.0]
    assert det(x, rescale=False, resize=True)[1, :4].tolist() == [0.0, 1.0, 1.0, 0.25]


def test_lookup_order_explicit_path_then_env_then_cache(clean_env, scripted_file, tmp_path, monkeypatch):
    clean_env.mkdir()
    cached = clean_env / "i3d_torchscript.pt"
    cached.write_bytes(scripted_file.read_bytes())
    assert load_detector().source == str(cached)
    other = tmp_path / "elsewhere.pt"
    other.write_bytes(scripted_file.read_bytes())
    monkeypatch.setenv("NBP_FVD_DETECTOR", str(other))
    assert load_detector().source == str(other)
    assert load_detector(scripted_file).source == str(scripted_file)


def test_missing_weights_error_says_what_to_fetch_from_where_to_where(clean_env):
    with pytest.raises(UserError) as err:
        load_detector(kind="torchscript")
    message = str(err.value)
    assert "\n" not in message and "NBP_OFFLINE" in message
    assert "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1" in message
    assert str(clean_env / "i3d_torchscript.pt") in message
    with pytest.raises(UserError, match="i3d_pretrained_400.pt"):
        load_detector(kind="state_dict")
    with pytest.raises(UserError, match="not found"):
        load_detector("/nonexistent/i3d.pt")
    assert not clean_env.exists() or not any(clean_env.iterdir())


def test_download_into_cache_when_online(clean_env, scripted_file, monkeypatch):
    monkeypatch.delenv("NBP_OFFLINE")
    # a file:// URL exercises the real download path without a network
    known = detector_mod.DetectorFile("torchscript", "i3d_torchscript.pt", scripted_file.as_uri())
    monkeypatch.setitem(detector_mod.KNOWN_FILES, "torchscript", known)
    det = load_detector(kind="torchscript")
    assert det.source == str(clean_env / "i3d_torchscript.pt")
    assert det.sha256 == sha256_file(scripted_file)


def test_failed_download_leaves_nothing_and_names_the_url(clean_env, tmp_path, monkeypatch):
    monkeypatch.delenv("NBP_OFFLINE")
    missing_url = (tmp_path / "nowhere.pt").as_uri()
    monkeypatch.setitem(detector_mod.KNOWN_FILES, "state_dict", detector_mod.DetectorFile("state_dict", "i3d_pretrained_400.pt", missing_url))
    with pytest.raises(UserError, match="download failed") as err:
        load_detector(kind="state_dict")
    assert missing_url in str(err.value)
    assert list(clean_env.iterdir()) == []
