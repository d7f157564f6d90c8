"""The compute dtype of inference: parsing, the per-device default, TF32, autocast.

float32, bfloat16 or float16. The default is bfloat16 on CUDA (tensor cores, half
the memory traffic of float32, and no overflow risk since it has float32's range)
and float32 on CPU, where reduced precision is usually slower, not faster.

Two ways a model runs in a reduced dtype:
- its weights are in that dtype (`load_model(..., dtype=)` or `cast_weights`): no
  conversion at run time, the fast way for inference;
- its weights are float32 and it runs under autocast: what `generate(..., dtype=)`
  does with a float32 model, so the caller's model is never modified.
Rotary tables and other buffers stay float32 in both: positions up to a few
thousand need more than bfloat16's 8 bits of mantissa.
"""

from __future__ import annotations

import contextlib

import torch

from tokenizer.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_dtype(device) -> torch.dtype:
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def resolve_dtype(dtype, device, what: str = "dtype") -> torch.dtype:
    """None -> the device default; a name ("bfloat16") or a torch.dtype -> that dtype, checked."""
    if dtype is None:
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        dtype = str(dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise UserError(f"{what} {dtype!r} is invalid; valid: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def enable_tf32(device, dtype: torch.dtype) -> None:
    """float32 matmuls and convolutions on CUDA use TF32 tensor cores (10-bit mantissa inputs, float32 sums)."""
    if torch.device(device).type == "cuda" and dtype == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def weights_dtype(model: torch.nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def cast_weights(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Parameters to `dtype` in place; buffers (rotary tables, masks) keep their dtype."""
    for param in model.parameters():
        param.data = param.data.to(dtype)
    return model


def compute_context(model: torch.nn.Module, dtype: torch.dtype, device):
    """Run `model` in `dtype`: as is when its weights already are, else under autocast.

    Weights in a lower precision than asked for cannot be brought back, so that is an error.
    """
    device = torch.device(device)
    enable_tf32(device, dtype)
    have = weights_dtype(model)
    if have == dtype:
        return contextlib.nullcontext()
    if have != torch.float32:
        raise UserError(f"the weights are {dtype_name(have)}; running them in {dtype_name(dtype)} needs float32 "
                        f"weights (load the model with dtype={dtype_name(dtype)!r} or float32)")
    return autocast(device, dtype)


def autocast(device, dtype: torch.dtype):
    """Autocast to `dtype` on the device, or nothing for float32."""
    device = torch.device(device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
