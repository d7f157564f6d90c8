"""Tiny random generators (tokenizer + transformer files) for end-to-end evaluation tests."""

from pathlib import Path

import torch

from nbp.config import NBPConfig
from nbp.model import NBPTransformer
from nbp.model_file import save_model_file
from tokenizer import TokenizerConfig, VideoTokenizer


def write_tiny_generator(folder: Path, condition: str, num_classes: int = 6, seed: int = 0) -> tuple[Path, Path]:
    """17x32x32 videos <-> 5x8x8 tokens (1000 codes); a 1-layer transformer with whole latent frames as blocks (few decode steps)."""
    torch.manual_seed(seed)
    tok = VideoTokenizer(TokenizerConfig.from_preset("synthetic", base_channels=8, norm_groups=4))
    tok_path = folder / "tokenizer.pt"
    tok.save(tok_path)
    extra = {"num_classes": num_classes} if condition == "class" else {"context_frames": 2}
    config = NBPConfig.from_preset(
        "tiny", vocab_size=tok.vocab_size, grid=(5, 8, 8), block=(1, 8, 8), condition=condition,
        n_layer=1, n_head=2, n_embd=32, dropout=0.0, **extra,
    )
    model_path = folder / "model.pt"
    save_model_file(NBPTransformer(config), config, model_path)
    return model_path, tok_path
