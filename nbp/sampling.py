"""`generate`: from a trained transformer (and tokenizer) to uint8 videos in one call.

    model = load_model("model.pt"); tokenizer = VideoTokenizer.load("tokenizer.pt")
    video = generate(model, tokenizer, cond=[0, 3], seed=0)   # uint8 (2, 3, T, H, W)
    write_mp4("samples.mp4", video)

The decoding loop itself lives in nbp.sampler, the logits controls in
nbp.sampling_controls; this module turns user-level conditions (class ids, a
context video) into model inputs and token grids back into pixels.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from nbp import pixels, precision
from nbp.errors import UserError, first_line
from nbp.rolling import iter_latent_frames, latent_frames_for, rolling_model_calls
from nbp.devices import sync
from nbp.sampler import DecodeStats
from nbp.sampling_controls import SamplingControls

__all__ = ["generate", "generate_tokens", "iter_token_frames", "load_model", "load_tokenizer", "tokens_to_video", "check_compatible"]


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype=None):
    """Load a transformer (`model.pt`, or a `.ckpt` of NBP training), in eval mode on `device`.

    dtype: of the weights (float32 / bfloat16 / float16; default bfloat16 on CUDA, float32 on CPU).
    """
    from nbp.model_file import load_model_file

    return load_model_file(path, device, precision.resolve_dtype(dtype, device))


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu"):
    """Load a tokenizer file (or a `.ckpt` of tokenizer training), in eval mode on `device`."""
    from tokenizer import VideoTokenizer

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--tokenizer {path}: no such file; pass a file written by the tokenizer "
                        f"(e.g. runs/tokenizer_synthetic/tokenizer.pt)")
    try:
        tok = VideoTokenizer.load(path)
    except UserError:
        raise
    except Exception as err:  # a file that is not a tokenizer checkpoint
        detail = first_line(err) if str(err).strip() else ""
        raise UserError(f"--tokenizer {path} could not be loaded as a tokenizer ({type(err).__name__}"
                        f"{': ' + detail if detail else ''}); pass a file written by VideoTokenizer.save") from None
    return tok.to(device).eval()
def class_ids(config, names) -> list[int]:
    """Class names -> ids, for models that know their class names (NBPConfig.class_names)."""
    if not config.class_names:
        raise UserError("this model does not know its class names; pass class ids instead")
    unknown = [n for n in names if n not in config.class_names]
    if unknown:
        raise UserError(f"unknown class name {unknown[0]!r}; valid: {', '.join(config.class_names)}")
    return [config.class_names.index(n) for n in names]


def _class_condition(config, cond, num, device) -> torch.Tensor:
    if cond is None:
        raise UserError(f"this model is class-conditional ({config.num_classes} classes); pass cond=class ids")
    if isinstance(cond, str) or (isinstance(cond, (list, tuple)) and cond and isinstance(cond[0], str)):
        cond = class_ids(config, [cond] if isinstance(cond, str) else list(cond))
    ids = torch.as_tensor(cond, dtype=torch.long).reshape(-1)
    if ids.numel() == 1 and num:
        ids = ids.expand(num)
    bad = ids[(ids < 0) | (ids >= config.num_classes)]
    if bad.numel():
        raise UserError(f"class id {int(bad[0])} is out of range; valid: 0..{config.num_classes - 1}")
    return ids.to(device).contiguous()


def context_pixel_frames(tokenizer, config) -> int:
    """Pixel frames whose (causal) encoding gives exactly the context latent frames: 2 -> 5."""
    return 1 + tokenizer.config.temporal_downsample * (config.context_frames - 1)


def _frames_condition(config, tokenizer, cond, device, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Context -> (prefix tokens (B, P) in sequence order, context grid (B, ctx, H', W'))."""
    if cond is None:
        raise UserError("this model continues given frames; pass cond=context video (B,3,T,H,W) or tokens")
    cond = torch.as_tensor(cond)
    layout = config.context_layout
    if cond.dim() == 5:  # pixels
        if tokenizer is None:
            raise UserError("a context video needs the tokenizer to encode it; pass tokenizer=...")
        frames = context_pixel_frames(tokenizer, config)
        if cond.shape[2] < frames:
            raise UserError(f"the context video has {cond.shape[2]} frames; this model needs at least {frames}")
        video = pixels.to_model(cond[:, :, :frames]).to(device)
        grid = tokenizer.encode(video, dtype=dtype)[:, : config.context_frames]
        if tuple(grid.shape[1:]) != layout.grid:
            raise UserError(f"context video encodes to a {tuple(grid.shape[1:])} grid; the model expects "
                            f"{layout.grid} (check the video resolution)")
    elif cond.dim() == 4:  # token grid
        grid = cond[:, : config.context_frames]
    elif cond.dim() == 2:  # tokens already in sequence order
        grid = layout.seq_to_grid(cond)
    else:
        raise UserError(f"context of shape {tuple(cond.shape)} is not a video (B,3,T,H,W) or tokens")
    grid = grid.to(device=device, dtype=torch.long)
    return layout.grid_to_seq(grid).contiguous(), grid


def model_condition(model, tokenizer, cond, num, dtype=None):
    """User-level condition -> (model input: class ids / context tokens / None, batch size for None)."""
    config = model.config
    device = next(model.parameters()).device
    if config.condition == "class":
        return _class_condition(config, cond, num, device), None
    if config.condition == "frames":
        return _frames_condition(config, tokenizer, cond, device, dtype)[0], None
    if cond is not None:
        raise UserError("this model is unconditional; pass num=... instead of cond")
    return None, num or 1


def temporal_downsample(model, tokenizer=None) -> int:
    """Pixel frames per latent frame: the tokenizer's, else what the model file recorded of it."""
    if tokenizer is not None:
        return int(tokenizer.config.temporal_downsample)
    recorded = (getattr(model, "tokenizer_record", None) or {}).get("temporal_downsample")
    if recorded is None:
        raise UserError("frames=... needs the tokenizer (this model file does not record its temporal "
                        "downsampling); pass tokenizer=...")
    return int(recorded)


def latent_length(model, tokenizer, frames: int | None) -> int:
    """Latent frames (context included) of a video of `frames` pixel frames; None: the model's length."""
    return model.config.grid[0] if frames is None else latent_frames_for(int(frames), temporal_downsample(model, tokenizer))


@torch.no_grad()
def iter_token_frames(
    model,
    tokenizer=None,
    cond=None,
    num: int | None = None,
    *,
    frames: int | None = None,
    controls: SamplingControls = SamplingControls(),
    generator: torch.Generator | None = None,
    compile: bool = False,
    dtype=None,
):
    """Yield the token grid (B, H', W') of every latent frame of a video of `frames` pixel frames
    (1 + 4k; default: the model's length), each as soon as it is sampled, context frames first.

    cond, num, compile, dtype: as in `generate_tokens`. Longer videos than the model's need a
    window model (NBPConfig.window); see nbp.rolling.
    """
    device = next(model.parameters()).device
    dtype = precision.resolve_dtype(dtype, device)
    model_cond, batch = model_condition(model, tokenizer, cond, num, dtype)
    latent = latent_length(model, tokenizer, frames)
    inner = iter_latent_frames(model, model_cond, latent, batch, controls=controls, generator=generator,
                               compiled=compile, dtype=dtype)
    while True:
        # the compute context is entered per frame: a generator must not leave autocast on in its caller
        with precision.compute_context(model, dtype, device):
            frame = next(inner, None)
        if frame is None:
            return
        yield frame


@torch.no_grad()
def generate_tokens(
    model,
    tokenizer=None,
    cond=None,
    num: int | None = None,
    *,
    frames: int | None = None,
    controls: SamplingControls = SamplingControls(),
    generator: torch.Generator | None = None,
    compile: bool = False,
    dtype=None,
) -> tuple[torch.Tensor, DecodeStats]:
    """Sample the full latent grid (B, T', H', W') (context frames included) and decode stats.

    frames: pixel frames of the video (1 + 4k; default: the model's length). compile: run the
    decode step compiled, for this call only. dtype: the compute dtype (default bfloat16 on
    CUDA, float32 on CPU); float32 weights then run under autocast.
    """
    device = next(model.parameters()).device
    sync(device)  # time the decoding, not earlier queued work
    started = time.perf_counter()
    grid = torch.stack(list(iter_token_frames(model, tokenizer, cond, num, frames=frames, controls=controls,
                                              generator=generator, compile=compile, dtype=dtype)), dim=1)
    sync(device)
    latent = grid.shape[1]
    config = model.config
    stats = DecodeStats(model_calls=rolling_model_calls(config, latent), seconds=time.perf_counter() - started,
                        tokens=(latent - config.context_frames) * config.grid[1] * config.grid[2],
                        batch_size=grid.shape[0])
    return grid, stats


@torch.no_grad()
def tokens_to_video(tokenizer, grid: torch.Tensor, dtype=None) -> torch.Tensor:
    """Token grid (B, T', H', W') -> uint8 video (B, 3, T, H, W); dtype of the decoder's compute."""
    return pixels.to_uint8(pixels.model_to_unit(tokenizer.decode(grid, dtype=dtype)))


def generator_for(device, generator, seed):
    if generator is not None or seed is None:
        return generator
    return torch.Generator(device=device).manual_seed(int(seed))


def pixel_shape(tokenizer, config) -> tuple[int, int, int]:
    """Pixel (T, H, W) of the videos whose token grid is the model's latent grid."""
    t, h, w = config.grid
    tok = tokenizer.config
    return 1 + tok.temporal_downsample * (t - 1), h * tok.spatial_downsample, w * tok.spatial_downsample


def check_compatible(model, tokenizer) -> None:
    """One clear line when the tokenizer cannot produce or read this model's tokens."""
    config = model.config
    if tokenizer.vocab_size != config.vocab_size:
        raise UserError(f"tokenizer vocabulary {tokenizer.vocab_size} does not match the model's "
                        f"vocab_size {config.vocab_size}; use the tokenizer the model was trained with")
    recorded = getattr(model, "tokenizer_record", None) or {}
    differ = [f"{k} {getattr(tokenizer.config, k)} (the model's tokens: {v})" for k, v in recorded.items()
              if getattr(tokenizer.config, k, v) != v]
    if differ:
        raise UserError(f"the tokenizer has {', '.join(differ)}; use the tokenizer the model was trained with")
    latent = tuple(tokenizer.latent_shape(*pixel_shape(tokenizer, config)))
    if latent != tuple(config.grid):
        raise UserError(f"tokenizer latent grid {latent} cannot match the model grid {tuple(config.grid)}; "
                        "use the tokenizer the model was trained with")


@torch.no_grad()
def generate(
    model,
    tokenizer=None,
    cond=None,
    num: int | None = None,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    cfg_scale: float = 1.0,
    cfg_ramp: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    frames: int | None = None,
    compile: bool = False,
    dtype=None,
) -> torch.Tensor:
    """Generate videos: uint8 (B, 3, T, H, W), or the token grid (B, T', H', W') without a tokenizer.

    cond: class ids (int, list or (B,) tensor), or class names when the model knows them
    (NBPConfig.class_names, e.g. a converted UCF-101 model), for a class-conditional model; a context
    video (B, 3, T, H, W, uint8 or float [0, 1]) or its tokens for a frames-conditioned
    model (the output then starts with the reconstructed context); None for an
    unconditional model, with `num` samples. cfg_scale 1 = no guidance. frames: pixel frames
    (1 + 4k, e.g. 65; default: the model's length; longer needs a window model). compile: run the
    decode step compiled (this call only). dtype: float32 / bfloat16 / float16 for the
    transformer and the tokenizer (default bfloat16 on CUDA, float32 on CPU).
    """
    controls = SamplingControls(temperature=temperature, top_k=top_k, top_p=top_p,
                                cfg_scale=cfg_scale, cfg_ramp=cfg_ramp)
    device = next(model.parameters()).device
    if tokenizer is not None:
        check_compatible(model, tokenizer)
    grid, _ = generate_tokens(model, tokenizer, cond, num, frames=frames, controls=controls,
                              generator=generator_for(device, generator, seed), compile=compile, dtype=dtype)
    return grid if tokenizer is None else tokens_to_video(tokenizer, grid, dtype)
