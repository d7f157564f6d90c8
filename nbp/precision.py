"""The compute dtype of inference: re-exported from `tokenizer.precision`, its home below both packages
(the tokenizer's encode and decode take a dtype too)."""

from tokenizer.precision import (
    DTYPES, autocast, cast_weights, compute_context, default_dtype, dtype_name, enable_tf32, resolve_dtype,
    weights_dtype)

__all__ = ["DTYPES", "autocast", "cast_weights", "compute_context", "default_dtype", "dtype_name", "enable_tf32",
           "resolve_dtype", "weights_dtype"]
