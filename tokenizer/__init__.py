"""The 3D VQ video tokenizer (MAGVIT-v2 style causal CNN + FSQ/LFQ/VQ), plain PyTorch."""

from tokenizer.config import TokenizerConfig
from tokenizer.model import VideoTokenizer

__all__ = ["TokenizerConfig", "VideoTokenizer"]
