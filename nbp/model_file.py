"""The transformer as one self-describing file: {"config": NBPConfig as a dict, "state_dict": weights}.

Plain data only, so it loads with `torch.load(weights_only=True)`; written atomically.
`NBPModule` writes one at the end of training (`model.pt` next to the checkpoints).
`load_model_file` also reads the Lightning checkpoints (`.ckpt`) of that module: they hold plain data
too (the resolved config in their hyperparameters), so reading them needs no Lightning.

Runtime switches (how to run, not what was learned) are not stored, and ignored when an
older file has them: a model trained with `compile: true` must not compile at inference.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from nbp.config import NBPConfig
from nbp.errors import UserError
from nbp.files import torch_save_atomic

FORMAT = "nbp-transformer-v1"
# What a model file records of the tokenizer its tokens came from (read back as model.tokenizer_record).
TOKENIZER_FIELDS = ("temporal_downsample", "spatial_downsample")
RUNTIME_SWITCHES = ("compile", "attn_backend", "grad_checkpointing")


def stored_config(config: NBPConfig) -> dict:
    """The config as a file keeps it: without the runtime switches."""
    return {k: v for k, v in config.to_dict().items() if k not in RUNTIME_SWITCHES}


def config_from_file(d: dict) -> NBPConfig:
    """The config of a stored model, with the runtime switches at their defaults."""
    return NBPConfig.from_dict({k: v for k, v in d.items() if k not in RUNTIME_SWITCHES})


def build_model(config: NBPConfig, state: dict, device="cpu", dtype: torch.dtype | None = None):
    """An `NBPTransformer` (eval mode) holding `state`, built on the meta device and given the tensors.

    No random initialisation runs (the weights would be overwritten anyway); float weights
    are converted to `dtype` (default: as stored) on `device` before they are assigned.
    """
    from nbp.model import NBPTransformer

    with torch.device("meta"):
        model = NBPTransformer(config)
    state = {k.replace("_orig_mod.", ""): v.to(device=device, dtype=dtype if v.is_floating_point() else None)
             for k, v in state.items()}
    model.load_state_dict(state, assign=True)
    return model.to(device).eval()  # moves the position tables; the weights are there already


def save_model_file(weights: torch.nn.Module | dict, config: NBPConfig, path: str | Path,
                    tokenizer: dict | None = None) -> Path:
    """Save a model (or its state dict) with its config.

    `tokenizer`: the compression of the tokenizer the tokens came from ({"temporal_downsample": 4,
    "spatial_downsample": 8}); sampling refuses a tokenizer that compresses otherwise, which the
    grid alone cannot tell (a 2x temporal tokenizer would decode the 5 latent frames to 9, not 17).
    """
    state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    # Weights go to CPU and lose any torch.compile wrapper prefix, so the file loads anywhere.
    state = {k.replace("_orig_mod.", ""): v.detach().cpu() for k, v in state.items()}
    data = {"format": FORMAT, "config": stored_config(config), "state_dict": state}
    if tokenizer:
        data["tokenizer"] = {k: int(tokenizer[k]) for k in TOKENIZER_FIELDS if k in tokenizer}
    torch_save_atomic(data, path)
    return Path(path)


def load_model_file(path: str | Path, map_location: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """Rebuild an `NBPTransformer` (eval mode) on `map_location` from a file written by `save_model_file`,
    or from a Lightning checkpoint (`.ckpt`) of NBPModule.

    dtype: of the weights (default: as stored, float32).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such model file")
    try:
        data = _load(path, map_location)
    except Exception as err:
        raise UserError(f"{path} is not a model file written by NBP training ({type(err).__name__})") from None
    config, state = _config_and_weights(path, data)
    try:
        model = build_model(config_from_file(dict(config)), state, map_location, dtype)
    except (KeyError, TypeError, RuntimeError) as err:
        raise UserError(f"{path} is a damaged model file ({type(err).__name__}: {str(err)[:120]})") from None
    # model.pt records the tokenizer its tokens came from; a Lightning checkpoint does not
    model.tokenizer_record = dict(data.get("tokenizer") or {}) if data.get("format") == FORMAT else {}
    return model


def _load(path: Path, map_location):
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        if path.suffix != ".ckpt":
            raise
        # Our own Lightning checkpoint whose saved data-module settings hold objects beyond plain data
        # (the project's rule allows full loading for exactly these files).
        return torch.load(path, map_location=map_location, weights_only=False)


def _config_and_weights(path: Path, data) -> tuple[dict, dict]:
    """(NBPConfig dict, transformer state dict) of a model file or of a Lightning checkpoint of NBPModule."""
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return data["config"], data["state_dict"]
    if isinstance(data, dict) and "pytorch-lightning_version" in data:
        config = (data.get("hyper_parameters") or {}).get("nbp_config")
        if config is None:
            raise UserError(f"{path} is a Lightning checkpoint but not of NBPModule (no nbp_config in its "
                            f"hyperparameters); give a checkpoint of the transformer or its model.pt")
        prefix = "model."  # NBPModule holds the transformer as its `model` attribute
        state = {k[len(prefix):]: v for k, v in data["state_dict"].items() if k.startswith(prefix)}
        return config, state
    raise UserError(f"{path} is not a model file written by NBP training (expected format {FORMAT} "
                    f"or a Lightning checkpoint of NBPModule)")
