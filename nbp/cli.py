"""The `nbp` command: a thin dispatcher to one module per subcommand.

Each subcommand module exposes `main(argv: list[str]) -> int` and parses its own
arguments with jsonargparse (so each takes `--config file.yaml`). Modules are
imported lazily: `nbp data synthetic` never imports Lightning. This is the one
place that routes into `lightning_modules` (for `train` and `demo`).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import traceback

from nbp.errors import UserError, is_parse_error, user_message

# name -> module path, or name -> {subname: module path} for command groups.
COMMANDS: dict[str, str | dict[str, str]] = {
    "data": {"synthetic": "nbp.commands.data_synthetic"},
    "train": "lightning_modules.cli",
    "tokenize": "nbp.commands.tokenize",
    "sample": "nbp.commands.sample",
    "eval": {
        "fvd": "nbp.commands.eval_fvd",
        "ucf101": "nbp.commands.eval_ucf101",
        "k600": "nbp.commands.eval_k600",
        "recon": "nbp.commands.eval_recon",
    },
    "bench": {
        "data": "nbp.bench.data",
        "tokenizer": "nbp.bench.tokenizer",
        "train": "nbp.bench.train",
        "sampling": "nbp.bench.sampling",
        "rolling": "nbp.bench.rolling",
        "streaming": "nbp.bench.streaming",
        "fvd": "nbp.bench.fvd",
        "gpu-check": "nbp.bench.gpu_check",
    },
    "demo": "lightning_modules.demo.cli",
    "convert": {"official": "nbp.commands.convert_official"},
}


def _usage(prefix: str, table: dict) -> str:
    names = ", ".join(table)
    return f"usage: {prefix} {{{names}}} ... (run '{prefix} NAME --help' for one command)"


def _resolve(argv: list[str]) -> tuple[str, list[str], str]:
    """Walk the command table; return (module path, remaining argv, command name)."""
    table: str | dict = COMMANDS
    prefix = "nbp"
    while isinstance(table, dict):
        if not argv or argv[0] in ("-h", "--help"):
            print(_usage(prefix, table))
            raise SystemExit(0 if argv else 2)
        name, argv = argv[0], argv[1:]
        if name not in table:
            raise UserError(f"unknown command '{prefix} {name}'; valid: {', '.join(table)}")
        table, prefix = table[name], f"{prefix} {name}"
    return table, argv, prefix


def _import_command(module_path: str, prog: str):
    try:
        return importlib.import_module(module_path)
    except ModuleNotFoundError as err:
        # Training needs Lightning; an inference-only install does not have it.
        if (err.name or "").partition(".")[0] in ("lightning", "tensorboard"):
            raise UserError(f"{prog} needs Lightning, which is not installed; install the train extra: "
                            f"pip install 'nbp-video[train]' (or bash scripts/install.sh)") from None
        raise


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Exit codes: 0 done, 2 a user's mistake (one line), 130 Ctrl-C, 1 a bug."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        module_path, rest, prog = _resolve(argv)
        module = _import_command(module_path, prog)
        code = int(module.main(rest, prog=prog) or 0)
        if from_command_line:
            # The work is done and written: a Ctrl-C while the interpreter shuts down (data loader
            # workers joining) must not turn a finished run into one killed by SIGINT.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return code
    except KeyboardInterrupt:
        _debug_traceback()
        print("nbp: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the one place every subcommand's errors end up
        message = user_message(err)
        if message is None:
            traceback.print_exc()
            print(f"nbp: internal error ({type(err).__name__}); this is a bug, please report the traceback above",
                  file=sys.stderr)
            return 1
        configs = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("--config", "-c")]
        if configs and is_parse_error(err) and not any(config in message for config in configs):
            message += f" (command line or --config {', '.join(configs)})"
        _debug_traceback()
        print(f"nbp: error: {message}", file=sys.stderr)
        return 2


def _debug_traceback() -> None:
    if os.environ.get("NBP_DEBUG", "") not in ("", "0"):
        traceback.print_exc()


if __name__ == "__main__":
    raise SystemExit(main())
