"""Safe file writing: every file we write appears whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from tokenizer.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only on success.

    A crash or Ctrl-C mid-write leaves the previous file (if any) untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        try:
            yield tmp
        except OSError as err:
            if err.errno == errno.ENOSPC:  # name the file the user will look for, not our temporary one
                raise OSError(errno.ENOSPC, err.strerror, str(path)) from err
            raise
        # mkstemp creates 0600 files; give the result the permissions any new file would get
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """UserError unless `path` is, or can be created as, a folder we can write into.

    Called before any expensive work, so a wrong `--out` costs seconds, not the whole run.
    Creates nothing.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file; give a folder (it is created if missing)")
    _check_writable_ancestor(path, option)
    return path


def check_output_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """UserError unless a file can be written at `path` (the folder above is created if missing)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{option} {path} is read-only; choose a path you can write to")
    _check_writable_ancestor(path.parent, option, target=path)
    return path


def _check_writable_ancestor(folder: Path, option: str, target: Path | None = None) -> None:
    """The nearest existing folder at or above `folder` must be a folder we may write into."""
    target = folder if target is None else target
    existing = Path(os.path.abspath(folder))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option} {target}: {existing} is a file, not a folder; give a path under a folder")
    # A real probe rather than os.access: that says yes to root and to folders like /proc.
    try:
        fd, probe = tempfile.mkstemp(prefix=".nbp-write-check.", dir=existing)
    except OSError as err:
        raise UserError(f"{option} {target}: cannot write into {existing} ({err.strerror}); "
                        f"choose a path you can write to") from None
    os.close(fd)
    os.unlink(probe)
