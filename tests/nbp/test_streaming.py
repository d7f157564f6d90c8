"""`stream`: the frames of `generate`, handed out latent frame by latent frame, the first after a fixed amount of work."""

import pytest
import torch

from nbp.config import NBPConfig
from nbp.errors import UserError
from nbp.model import NBPTransformer
from nbp.sampling import generate
from nbp.streaming import stream
from tokenizer import TokenizerConfig, VideoTokenizer


@pytest.fixture(scope="module")
def tokenizer():
    torch.manual_seed(0)
    return VideoTokenizer(TokenizerConfig.from_preset("synthetic", base_channels=8, norm_groups=4, num_res_blocks=1)).eval()


def tiny_model(tokenizer, condition, window=0, grid=(5, 8, 8)):
    torch.manual_seed(1)
    extra = {"class": dict(condition="class", num_classes=6), "frames": dict(condition="frames", context_frames=2),
             "none": dict(condition="none")}[condition]
    first = "context" if condition == "frames" and not window else "hybrid"
    config = NBPConfig(vocab_size=tokenizer.vocab_size, grid=grid, block=(1, 1, 8), first_block=first, n_layer=1,
                       n_head=2, n_embd=32, dropout=0.0, window=window, **extra)
    return NBPTransformer(config).eval()


def condition(condition, batch=2):
    if condition == "class":
        return [1, 4][:batch], None
    if condition == "frames":
        return torch.randint(0, 256, (batch, 3, 5, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3)), None
    return None, batch


def assert_same_video(streamed, generated):
    """uint8 frames of the same float pixels: the streamed decode differs from the whole clip's by float32
    rounding (~1e-6), which can move a value sitting on a rounding edge by one level, nothing more."""
    assert streamed.shape == generated.shape and streamed.dtype == torch.uint8
    diff = (streamed.int() - generated.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3


@pytest.mark.parametrize("cond_kind", ["class", "frames", "none"])
def test_stream_gives_the_video_of_generate(tokenizer, cond_kind):
    model = tiny_model(tokenizer, cond_kind)
    cond, num = condition(cond_kind)
    generated = generate(model, tokenizer, cond, num, seed=7, top_k=50)
    pieces = list(stream(model, tokenizer, cond, num, seed=7, top_k=50))
    assert [p.shape[2] for p in pieces] == [1, 4, 4, 4, 4]
    assert_same_video(torch.cat(pieces, dim=2), generated)


@pytest.mark.parametrize("cond_kind", ["class", "frames"])
def test_stream_beyond_the_window(tokenizer, cond_kind):
    model = tiny_model(tokenizer, cond_kind, window=5)
    cond, num = condition(cond_kind)
    generated = generate(model, tokenizer, cond, num, seed=2, frames=33)
    pieces = list(stream(model, tokenizer, cond, num, seed=2, frames=33))
    assert [p.shape[2] for p in pieces] == [1] + [4] * 8
    assert_same_video(torch.cat(pieces, dim=2), generated)


def count_model_calls(model):
    calls = []
    for name in ("prefill", "step"):
        original = getattr(model, name)

        def counted(*args, _original=original, **kwargs):
            calls.append(name)
            return _original(*args, **kwargs)

        setattr(model, name, counted)
    return calls


def test_first_frame_comes_after_the_same_work_whatever_the_length(tokenizer):
    """The first frame is yielded after the first latent frame's model calls, for 17, 33 and 65 frames."""
    model = tiny_model(tokenizer, "class", window=5)
    calls = count_model_calls(model)
    before_first, total = {}, {}
    for frames in (17, 33, 65):
        calls.clear()
        pieces = stream(model, tokenizer, [2], frames=frames, seed=0)
        first = next(pieces)
        before_first[frames] = len(calls)
        assert first.shape == (1, 3, 1, 32, 32)
        rest = list(pieces)
        total[frames] = len(calls)
        assert 1 + 4 * len(rest) == frames
    # hybrid first block: 8 tokens one by one, then the frame's other 7 rows: 1 prefill + 7 + 7 steps
    assert before_first == {17: 15, 33: 15, 65: 15}
    assert total[17] < total[33] < total[65]


def test_stream_checks_before_the_first_frame(tokenizer):
    model = tiny_model(tokenizer, "class")
    with pytest.raises(UserError, match="pass tokenizer"):
        stream(model, None, [1])
    other = VideoTokenizer(TokenizerConfig.from_preset("synthetic", base_channels=8, norm_groups=4, num_res_blocks=1,
                                                       fsq_levels=(8, 8, 5)))
    with pytest.raises(UserError, match="vocabulary"):
        stream(model, other, [1])  # raised by the call itself, not at the first next()
