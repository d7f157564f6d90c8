"""The reference implementation's released files, read into this project's objects.

    tokenizer = load_official_tokenizer("magvit2_ucf.pt")             # a VideoTokenizer
    model = load_official_transformer("ucf_base_nbp16_hybrid.ckpt")   # an NBPTransformer

Paths may also be hf://owner/repo/file references (see nbp.official.hub).
`nbp convert official` writes both as the project's native files.
"""

from nbp.official.tokenizer import load_official_tokenizer
from nbp.official.transformer import load_official_transformer

__all__ = ["load_official_tokenizer", "load_official_transformer"]
