"""TokenWindows: windows of W latent frames cut from the long clips of a token cache.

Training (`offsets="all"`) lists every (clip, offset) pair, so a shuffling loader draws windows
at random offsets, each once per epoch, in an order fixed by its seed (and resumable). Held-out
data (`offsets="fixed"`) takes each clip at three fixed offsets: its start, its middle and its
end. Each item says whether its window starts at the clip's first latent frame, which a causal
tokenizer encodes from one pixel frame instead of four.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from nbp.errors import UserError

OFFSETS = ("all", "fixed")


def window_offsets(clip_frames: int, window: int, offsets: str) -> list[int]:
    """The first latent frames of the windows taken from one clip of `clip_frames` latent frames."""
    last = clip_frames - window
    if offsets == "all":
        return list(range(last + 1))
    return sorted({0, last // 2, last})


class TokenWindows(Dataset):
    """Items `{"tokens": int64 (W, H', W'), "label": int, "clip_start": bool}` of a clip dataset's items."""

    def __init__(self, clips: Dataset, clip_frames: int, window: int, offsets: str = "all"):
        if offsets not in OFFSETS:
            raise UserError(f"offsets={offsets!r} is invalid; valid: {', '.join(OFFSETS)}")
        if not 2 <= window <= clip_frames:
            raise UserError(f"data.init_args.window={window} is invalid: between 2 and the clips' {clip_frames} "
                            f"latent frames (tokenize longer clips, e.g. --frames 65 gives 17)")
        self.clips, self.window = clips, window
        self.offsets = window_offsets(clip_frames, window, offsets)

    def __len__(self) -> int:
        return len(self.clips) * len(self.offsets)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        clip, k = divmod(index, len(self.offsets))
        item = self.clips[clip]
        start = self.offsets[k]
        return {"tokens": item["tokens"][start:start + self.window], "label": item["label"],
                "clip_start": start == 0}
