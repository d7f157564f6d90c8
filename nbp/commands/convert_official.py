"""`nbp convert official`: the reference implementation's released files -> this project's native files.

    nbp convert official --tokenizer magvit2_ucf.pt --transformer ucf_base_nbp16_hybrid.ckpt --out released/ucf

writes `tokenizer.pt` (VideoTokenizer) and `model.pt` (NBPTransformer) into --out, each
atomically, and `convert.json` with the sha256 of every source file. `nbp sample`,
`nbp eval ucf101` and `nbp eval k600` then take --model DIR/model.pt --tokenizer DIR/tokenizer.pt.
Sources may be hf://owner/repo/file references (fetched into the Hugging Face cache).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from nbp.errors import UserError
from nbp.files import sha256_file, write_json_atomic

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, description="Convert the released NBP tokenizer and transformer files.")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--tokenizer", type=str, default=None, help="magvit2_ucf.pt / magvit2_k600.pt (or hf://...)")
    parser.add_argument("--transformer", type=str, default=None, help="*_nbp16*.ckpt (or hf://...)")
    parser.add_argument("--out", type=str, required=True, help="folder for tokenizer.pt, model.pt, convert.json")
    parser.add_argument("--dtype", type=str, default="float32",
                        help="dtype of the weights in model.pt: float32 | bfloat16 | float16 (the tokenizer stays float32)")
    return parser


def check_out_dir(out: Path) -> None:
    """Fail before the slow part when the output folder cannot be written."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder")
    parent = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise UserError(f"--out {out}: {parent} is not writable")


def main(argv: list[str], prog: str = "nbp convert official") -> int:
    args = build_parser(prog).parse_args(argv)
    if not args.tokenizer and not args.transformer:
        raise UserError("give --tokenizer FILE and/or --transformer FILE to convert")
    if args.dtype not in DTYPES:
        raise UserError(f"--dtype {args.dtype!r} is invalid; valid: {', '.join(DTYPES)}")
    out = Path(args.out)
    check_out_dir(out)

    from nbp.model_file import save_model_file
    from nbp.official.hub import resolve
    from nbp.official.tokenizer import load_official_tokenizer
    from nbp.official.transformer import load_official_transformer
    from nbp.sampling import check_compatible

    sources = {}
    for flag in ("tokenizer", "transformer"):
        name = getattr(args, flag)
        if name:
            local = resolve(name)
            if not local.is_file():
                raise UserError(f"--{flag} {name}: no such file")
            sources[flag] = {"source": name, "path": str(local), "sha256": sha256_file(local)}
    tokenizer = load_official_tokenizer(sources["tokenizer"]["path"]) if args.tokenizer else None
    model = load_official_transformer(sources["transformer"]["path"]) if args.transformer else None
    if tokenizer is not None and model is not None:
        check_compatible(model, tokenizer)

    out.mkdir(parents=True, exist_ok=True)
    written = []
    if tokenizer is not None:
        tokenizer.save(out / "tokenizer.pt", extra={"converted_from": sources["tokenizer"]})
        written.append("tokenizer.pt")
    if model is not None:
        state = {k: v.to(DTYPES[args.dtype]) if v.is_floating_point() else v for k, v in model.state_dict().items()}
        save_model_file(state, model.config, out / "model.pt")
        written.append("model.pt")
    report = {"sources": sources, "written": written, "dtype": args.dtype}
    if model is not None:
        report["model"] = {"parameters": model.num_params(), **model.config.to_dict()}
    write_json_atomic(out / "convert.json", report)
    print(f"wrote {', '.join(written)} to {out}")
    return 0
