"""One-file save/load: weights_only round trip and clear errors for files that do not fit."""

import pytest
import torch

from nbp.errors import UserError
from tests.tokenizer.helpers import tiny_config
from tokenizer import VideoTokenizer


def test_save_load_round_trip(tmp_path):
    tok = VideoTokenizer(tiny_config()).eval()
    path = tmp_path / "tok.pt"
    tok.save(path)
    payload = torch.load(path, weights_only=True)  # plain tensors and primitives only
    assert payload["config"] == tiny_config().to_dict()
    loaded = VideoTokenizer.load(path)
    assert loaded.config == tok.config and not loaded.training
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    ids = tok.encode(video)
    assert torch.equal(loaded.encode(video), ids)
    torch.testing.assert_close(loaded.decode(ids), tok.decode(ids), rtol=0, atol=0)
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temporary left behind


def test_file_from_before_the_optional_architecture_fields_loads_as_it_was(tmp_path):
    """Files written before these fields existed keep working, as the linear, fully 3D model they were."""
    path = tmp_path / "old.pt"
    tok = VideoTokenizer(tiny_config())
    tok.save(path)
    payload = torch.load(path, weights_only=True)
    for field in ("tanh_output", "per_frame_convs", "decoder_time_kernel"):
        del payload["config"][field]
    torch.save(payload, path)
    loaded = VideoTokenizer.load(path)
    assert loaded.config.tanh_output is False and loaded.config.per_frame_convs is False
    assert loaded.config.decoder_time_kernel == 3
    assert loaded.config == tok.config


def test_config_mismatch_names_the_fields(tmp_path):
    path = tmp_path / "tok.pt"
    VideoTokenizer(tiny_config()).save(path)
    with pytest.raises(UserError) as err:
        VideoTokenizer.load(path, config=tiny_config(base_channels=16, fsq_levels=(8, 5, 5)))
    message = str(err.value)
    assert "base_channels: file has 8, expected 16" in message
    assert "fsq_levels" in message and "norm_groups" not in message


def test_weights_that_do_not_fit_the_config(tmp_path):
    path = tmp_path / "tok.pt"
    VideoTokenizer(tiny_config()).save(path)
    payload = torch.load(path, weights_only=True)
    payload["config"]["base_channels"] = 16  # config says 16 wide, weights are 8 wide
    torch.save(payload, path)
    with pytest.raises(UserError, match="do not fit the tokenizer config.*wrong shape"):
        VideoTokenizer.load(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        VideoTokenizer.load(tmp_path / "nope.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(UserError, match="is not a tokenizer file"):
        VideoTokenizer.load(foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="not a readable tokenizer file"):
        VideoTokenizer.load(garbage)
