"""Read the reference implementation's released transformers (`*_nbp16*.ckpt`) into an NBPTransformer.

The file is a Lightning 1.x checkpoint: the minGPT under `transformer.` in "state_dict"
(maybe behind `module.`, maybe next to the frozen tokenizer under `first_stage_model.`),
and the run's argparse.Namespace under hyper_parameters["args"]. The configuration comes
from that Namespace; the two layouts the reference trains become NBPConfig settings:

- UCF-101 (HybridNet2NetTransformer): [8 LLaMA text ids][begin-of-video, v_0 .. v_{K-2}]
  [v_{K-1}, placeholders 1 .. K-1][v_K ...] in one shared vocabulary (id 0 begin-of-video,
  1 .. K-1 placeholders, K + LLaMA id, K + 32000 + video id): class_text_len=8,
  first_block="hybrid", hybrid_placeholders=True, video_offset=32000 + K. Every row sees
  every text column, pad columns included (what the reference code's mask does).
- K600 (Net2NetTransformer, unconditional): the video alone, block-causal from position 0,
  the first 2 latent frames given: condition="frames", first_block="context".
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

import torch

from nbp.config import NBPConfig
from nbp.errors import UserError
from nbp.model import NBPTransformer
from nbp.official.files import read_torch_file

WHAT = "reference transformer checkpoint (*_nbp16*.ckpt)"
REQUIRED = ("n_layer", "n_head", "n_embd", "block_size", "token_number_per_step", "vocab_size", "resolution",
            "sequence_length", "unconditional", "cond_stage_key", "starts_with_bov", "hybrid", "cond_token_num")
K600_CONTEXT_FRAMES = 2  # the reference's frame prediction: 5 pixel frames = 2 latent frames given
SPATIAL, TEMPORAL = 8, 4  # the released MAGVIT-v2 tokenizer's compression


def ucf101_class_text() -> tuple[list[str], list[list[int]]]:
    """The 101 UCF-101 class names in classInd order and their 8 LLaMA ids (before the shift)."""
    text = resources.files("nbp.official").joinpath("ucf101_class_text_ids.json").read_text()
    classes = json.loads(text)["classes"]
    names = sorted(classes)
    return names, [classes[n]["llama_ids"] for n in names]


def read_checkpoint(path: str | Path) -> tuple[argparse.Namespace, dict[str, torch.Tensor]]:
    """(args, GPT weights with the `transformer.` prefix removed) of a released checkpoint."""
    data = read_torch_file(path, WHAT)
    if isinstance(data, dict) and "model_state_dict" in data:
        raise UserError(f"{path} is a tokenizer file (magvit2_*.pt), not a {WHAT}; pass it as --tokenizer")
    state = data.get("state_dict") if isinstance(data, dict) else None
    args = (data.get("hyper_parameters") or {}).get("args") if isinstance(data, dict) else None
    if not isinstance(state, dict) or not isinstance(args, argparse.Namespace):
        raise UserError(f"{path} is not a {WHAT}: expected 'state_dict' and hyper_parameters['args'] (a Namespace)")
    missing = [name for name in REQUIRED if not hasattr(args, name)]
    if missing:
        raise UserError(f"{path}: the run's hyperparameters lack {', '.join(missing)}; not a {WHAT}")
    gpt = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("transformer."):
            gpt[key[len("transformer."):]] = value
    if "tok_emb.weight" not in gpt:
        raise UserError(f"{path}: no transformer.* weights in its state_dict; not a {WHAT}")
    return args, gpt


def _block_shape(block_len: int, grid: tuple[int, int, int], source) -> tuple[int, int, int]:
    """token_number_per_step as a block of whole raster rows (or part of one row)."""
    _, h, w = grid
    if w % block_len == 0:
        return (1, 1, block_len)
    if block_len % w == 0 and h % (block_len // w) == 0:
        return (1, block_len // w, w)
    raise UserError(f"{source}: token_number_per_step={block_len} does not cut the {h}x{w} latent rows into blocks")


def config_from_args(args: argparse.Namespace, gpt: dict[str, torch.Tensor], source) -> NBPConfig:
    """The NBPConfig of the layout the reference trained with these hyperparameters."""
    latent_t = (int(args.sequence_length) - 1) // TEMPORAL + 1
    grid = (latent_t, int(args.resolution) // SPATIAL, int(args.resolution) // SPATIAL)
    K = int(args.token_number_per_step)
    common = dict(vocab_size=int(args.vocab_size), grid=grid, block=_block_shape(K, grid, source),
                  n_layer=int(args.n_layer), n_head=int(args.n_head), n_embd=int(args.n_embd),
                  arch="reference", dropout=float(getattr(args, "transformer_dropout", 0.1)), p_uncond=0.0)
    rows = gpt["tok_emb.weight"].shape[0]
    if args.unconditional and not args.starts_with_bov and not args.cond_token_num:
        if rows != common["vocab_size"]:
            raise UserError(f"{source}: an unconditional model should have {common['vocab_size']} token rows, has {rows}")
        config = NBPConfig(**common, condition="frames", context_frames=K600_CONTEXT_FRAMES, first_block="context")
    elif args.cond_stage_key == "text" and args.hybrid and args.starts_with_bov and not args.unconditional:
        names, text = ucf101_class_text()
        if int(args.cond_token_num) != len(text[0]):
            raise UserError(f"{source}: cond_token_num={args.cond_token_num}, but the shipped UCF-101 class texts are "
                            f"{len(text[0])} LLaMA ids long")
        offset = rows - common["vocab_size"]  # begin-of-video, placeholders and text come before the video ids
        if offset <= K:
            raise UserError(f"{source}: {rows} token rows leave no room for text before {common['vocab_size']} video ids")
        config = NBPConfig(**common, condition="class", num_classes=len(names), class_names=tuple(names),
                           class_text_len=int(args.cond_token_num), first_block="hybrid", hybrid_placeholders=True,
                           video_offset=offset)
    else:
        raise UserError(f"{source}: unknown layout (unconditional={args.unconditional}, cond_stage_key="
                        f"{args.cond_stage_key!r}, hybrid={args.hybrid}, starts_with_bov={args.starts_with_bov}); "
                        "known: the UCF-101 text-conditional hybrid model and the K600 unconditional model")
    if int(args.block_size) < config.seq_len:
        raise UserError(f"{source}: block_size={args.block_size} positions, but the layout needs {config.seq_len}")
    return config


def convert_state(gpt: dict[str, torch.Tensor], config: NBPConfig) -> dict[str, torch.Tensor]:
    """Reference minGPT weights -> NBPTransformer weights (float32)."""
    gpt = {k: v.float() for k, v in gpt.items()}
    tok = gpt["tok_emb.weight"]
    K = config.block_len
    out = {
        # one extra row: our null context token (never used by the released models)
        "tok_emb.weight": torch.cat([tok, tok.new_zeros(1, tok.shape[1])]),
        "pos_emb": gpt["pos_emb"][0, : config.seq_len],
        "norm_f.weight": gpt["ln_f.weight"], "norm_f.bias": gpt["ln_f.bias"],
        "head.weight": gpt["head.weight"],
    }
    if config.class_text_len:
        _, text = ucf101_class_text()
        out["class_text"] = torch.tensor(text, dtype=torch.long) + K  # LLaMA id i is row K + i
        out["null_text_emb"] = gpt["uncond_embedding"]
    if config.first_block == "hybrid":
        out["bos_emb"] = tok[0:1]
    if config.hybrid_placeholders:
        out["placeholder_emb"] = tok[1:K]
    for i in range(config.n_layer):
        p = f"blocks.{i}."
        for ours, theirs in (("norm1", "ln1"), ("norm2", "ln2"), ("attn.proj", "attn.proj"),
                             ("mlp.fc", "mlp.0"), ("mlp.proj", "mlp.2")):
            for kind in ("weight", "bias"):
                out[f"{p}{ours}.{kind}"] = gpt[f"{p}{theirs}.{kind}"]
        for kind in ("weight", "bias"):
            out[f"{p}attn.qkv.{kind}"] = torch.cat([gpt[f"{p}attn.{n}.{kind}"] for n in ("query", "key", "value")])
    return out


def official_transformer_from(args: argparse.Namespace, gpt: dict[str, torch.Tensor], source) -> NBPTransformer:
    config = config_from_args(args, gpt, source)
    try:
        state = convert_state(gpt, config)
    except KeyError as err:
        raise UserError(f"{source}: weight {err.args[0]!r} is missing; not a complete {WHAT}") from None
    model = NBPTransformer(config)
    own = model.state_dict()
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if wrong or set(own) != set(state):
        raise UserError(f"{source}: the weights do not fit the model its hyperparameters describe "
                        f"(wrong shape {wrong[:3]}, missing {sorted(set(own) - set(state))[:3]})")
    model.load_state_dict(state)
    return model.eval()


def load_official_transformer(path: str | Path) -> NBPTransformer:
    """*_nbp16*.ckpt (local path or hf://...) -> NBPTransformer in eval mode, float32 on the CPU."""
    args, gpt = read_checkpoint(path)
    return official_transformer_from(args, gpt, path)
