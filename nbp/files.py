"""Atomic writes, output checks and checksums: re-exported from `tokenizer.files`, their home below both packages."""

from tokenizer.files import (atomic_path, check_output_file, check_output_folder, sha256_file, torch_save_atomic,
                             write_bytes_atomic, write_json_atomic)

__all__ = ["atomic_path", "check_output_file", "check_output_folder", "sha256_file", "torch_save_atomic",
           "write_bytes_atomic", "write_json_atomic"]
