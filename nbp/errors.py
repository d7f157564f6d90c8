"""Mistakes a user can make, and how the command line reports them.

`UserError` is the one exception type our own checks raise (bad path, value, checkpoint); it and
`first_line` are defined in `tokenizer.errors`, below both packages, and re-exported here.
`user_message(exc)` turns it, and the few foreign exception types that also mean "the input
is wrong" (argument parsing, Lightning's configuration errors, a file that cannot be read or
written), into one line; for anything else it returns None: that is a bug, and the command
line shows its traceback.
"""

from __future__ import annotations

import argparse
import errno
import re

from tokenizer.errors import UserError, first_line  # defined below nbp: the tokenizer raises them too

# Lines of jsonargparse's nested messages that only repeat what the other lines say.
_NOISE = re.compile(r"^(- )?(Does not validate against any of the Union subtypes|Subtypes:|Errors:|"
                    r"Given value type:|Given value:|Expected a <class 'NoneType'>)")
_TYPE_WORDS = {"int": "an integer", "float": "a finite number", "bool": "true or false", "str": "a string"}
_EXPECTED = re.compile(r"Expected a <class '(\w+)'>\. Got value: (.*)$")

# OSError numbers that mean the path the user gave is wrong, unwritable, or the disk is full.
_FILE_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
                errno.ENOSPC, errno.EEXIST, errno.ENAMETOOLONG, errno.EDQUOT}


def user_message(exc: BaseException) -> str | None:
    """One line describing a user's mistake, or None when `exc` is a bug."""
    for link in _chain(exc):
        if isinstance(link, UserError):
            return _one_line(str(link) or type(link).__name__)
    if isinstance(exc, argparse.ArgumentError) or is_parse_error(exc):
        return _argument_message(exc)
    if type(exc).__name__ == "MisconfigurationException":  # Lightning's "your Trainer settings are wrong"
        return _one_line(str(exc))
    missing = _missing_package(exc)
    if missing:
        return missing
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno in _FILE_ERRNOS:
            return _file_message(link)
    return None


# Our own packages: a missing module among them is a bug, not a missing optional dependency.
_OURS = ("nbp", "tokenizer", "lightning_modules", "tests")


def _missing_package(exc: BaseException) -> str | None:
    """What to say when a setting needs an optional package that is not installed (torch_xla for tpu)."""
    for link in _chain(exc):
        if not isinstance(link, ModuleNotFoundError):
            continue
        if link.name is None:  # Lightning's own requirement check: its message names the package
            return _one_line(str(link)) or None
        top = link.name.split(".")[0]
        if top in _OURS:
            return None
        return f"this needs the Python package '{top}', which is not installed here (pip install {top})"
    return None


def _chain(exc: BaseException):
    """`exc` and every exception it was raised from or during (each once)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_parse_error(exc: BaseException) -> bool:
    # jsonargparse reports invalid values met while building a subclass as a plain ValueError
    # whose message starts like this; anything in its chain that is an ArgumentError also counts.
    return any(isinstance(link, argparse.ArgumentError) for link in _chain(exc)) or str(exc).startswith(
        ("Does not validate against any of the Union subtypes", "Problem with given class_path"))


def _argument_message(exc: BaseException) -> str:
    """jsonargparse's indented multi-line reports, folded into one line that keeps every fact."""
    parts = []
    for raw in str(exc).splitlines():
        line = raw.strip()
        if not line or _NOISE.match(line):
            continue
        line = line.removeprefix("- ").rstrip(": ")
        line = re.sub(r'Parser key "([^"]+)"', r"--\1", line)
        line = re.sub(r"Problem with given class_path '[\w.]*?(\w+)'", r"\1", line)
        line = re.sub(r'\s*in "<unicode string>",?\s*', "", line)
        if line.startswith("Unexpected config"):
            line = "the config file is empty or is not a mapping of 'option: value' lines"
        match = _EXPECTED.search(line)
        if match:
            kind, value = match.groups()
            line = line[:match.start()] + f"got {value!r}, expected {_TYPE_WORDS.get(kind, kind)}"
        line = re.sub(r"Expected a <class '(\w+)'>", lambda m: f"expected {_TYPE_WORDS.get(m.group(1), m.group(1))}", line)
        if line and line not in parts:
            parts.append(line)
    message = _one_line(": ".join(parts) or type(exc).__name__)
    rejected = re.search(r"Option '(\w+)' is not accepted", message)
    class_path = re.search(r"class_path '([\w.]+)'", str(exc))
    if rejected and class_path:
        message += f"; valid: {_class_options(class_path.group(1))}"
    return message


def _class_options(class_path: str) -> str:
    """The keys the init_args of the class a config names accept, comma-separated."""
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    try:
        params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except Exception:  # the class itself is what is wrong; nothing more to list
        return "see --help"
    return ", ".join(p for p in params if p not in ("self", "args", "kwargs"))


def _file_message(err: OSError) -> str:
    where = err.filename if err.filename is not None else "a file"
    if err.errno == errno.ENOSPC:
        return f"no space left on the device while writing {where}; free some space and run again (finished files are kept)"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}: permission denied; choose a path you can write to"
    return f"{where}: {err.strerror or err}"


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def ignore_interrupt_in_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: Ctrl-C reaches the whole process group, workers included.

    The main process stops the loader and reports the interrupt once ("nbp: interrupted");
    a worker that also raised KeyboardInterrupt would print its own traceback first.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])  # held by iterate_with_workers


def iterate_with_workers(loader):
    """`iter(loader)` with Ctrl-C held while the worker processes start.

    A worker forked in the moment of a Ctrl-C would get it before `ignore_interrupt_in_worker`
    runs and print a traceback of its own; held, the main process gets it right after.
    """
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
