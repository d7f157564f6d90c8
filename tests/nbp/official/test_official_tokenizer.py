"""The reference MAGVIT-v2 tokenizer (370M parameters) against the golden outputs of the reference code."""

from __future__ import annotations

import pytest
import torch

from nbp.errors import UserError
from nbp.official.tokenizer import load_official_tokenizer, official_tokenizer_from_state
from tests.nbp.official.golden import DATA, load_golden, reference_tokenizer_state, rule_weights
from tokenizer import TokenizerConfig, VideoTokenizer


@pytest.fixture(scope="module")
def golden():
    return load_golden("tokenizer_golden.pt")


@pytest.fixture(scope="module")
def tokenizer(golden):
    return official_tokenizer_from_state(rule_weights(golden["manifest"]))


def test_same_tensors_as_the_reference(golden, tokenizer):
    ours = [(k, list(v.shape)) for k, v in tokenizer.state_dict().items()]
    theirs = [(k.replace("encoder_layers.", "encoder.layers.").replace("decoder_layers.", "decoder.layers."), list(s))
              for k, s in golden["manifest"]]
    assert ours == theirs
    assert tokenizer.config == TokenizerConfig.from_preset("magvit2")


@torch.no_grad()
def test_encode_matches_golden(golden, tokenizer):
    video = golden["input_video"] * 2 - 1  # the reference's [0, 1] pixels in our [-1, 1]
    quantized = tokenizer.encode(video, return_latents=True)
    latents = tokenizer.encoder(video)
    assert (latents - golden["latents"]).abs().max() < 1e-4
    assert (quantized.ids == golden["ids"]).float().mean() >= 0.99
    same = quantized.ids == golden["ids"]
    assert torch.allclose(quantized.codes.permute(0, 2, 3, 4, 1)[same], golden["quantized"].permute(0, 2, 3, 4, 1)[same])


@torch.no_grad()
def test_decode_matches_golden(golden, tokenizer):
    raw = tokenizer.decode_codes(tokenizer.quantizer.ids_to_codes(golden["ids"]))
    assert (raw - (golden["decoded_from_ids"] * 2 - 1)).abs().max() < 1e-3 * 2  # 1e-3 in [0, 1] units
    clamped = tokenizer.decode(golden["ids"])
    assert torch.equal(clamped, raw.clamp(-1, 1))


@torch.no_grad()
def test_streamed_decode_matches_golden(golden, tokenizer):
    """The released network decoded one latent frame at a time gives the reference's whole-clip pixels."""
    from tokenizer.streaming import StreamingDecoder

    stream = StreamingDecoder(tokenizer)
    parts = [stream.push(golden["ids"][:, t]) for t in range(golden["ids"].shape[1])]
    assert [p.shape[2] for p in parts] == [1, 4, 4]
    expected = (golden["decoded_from_ids"] * 2 - 1).clamp(-1, 1)
    assert (torch.cat(parts, dim=2) - expected).abs().max() < 1e-3 * 2  # as the whole-clip decode above


def test_reference_fsq_round_trips_every_code(tokenizer):
    fsq = tokenizer.quantizer.impl
    ids = torch.arange(fsq.codebook_size)
    assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(ids)), ids)


def test_file_round_trip_reads_widths_from_the_weights(tmp_path):
    path = tmp_path / "magvit2_small.pt"
    torch.save({"model_state_dict": reference_tokenizer_state(3), "version": "0.0"}, path)
    tokenizer = load_official_tokenizer(path)
    assert tokenizer.config.base_channels == 32 and tokenizer.config.num_res_blocks == 1
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    ids = tokenizer.encode(video)
    assert ids.shape == (1, 2, 2, 2)
    assert tokenizer.decode(ids).shape == video.shape


def test_bad_tokenizer_files(tmp_path):
    with pytest.raises(UserError, match="transformer"):
        load_official_tokenizer(DATA / "k600_tiny.ckpt")
    truncated = tmp_path / "cut.pt"
    full = tmp_path / "full.pt"
    torch.save({"model_state_dict": reference_tokenizer_state(0)}, full)
    truncated.write_bytes(full.read_bytes()[:5000])
    with pytest.raises(UserError, match="not a readable"):
        load_official_tokenizer(truncated)
    with pytest.raises(UserError, match="no such file"):
        load_official_tokenizer(tmp_path / "missing.pt")
