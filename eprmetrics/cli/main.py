"""Dispatch: parse, run the command, and report every user error as one line (exit 2)."""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from typing import Any, Optional, Sequence

from ..fileio import OutputError, describe_os_error
from .commands import COMMAND_FUNCTIONS, flag
from .parser import COMMANDS, UsageError, build_parser

__all__ = ["main"]


_USER_ERRORS = (
    UsageError,
    ValueError,
    TypeError,
    FileNotFoundError,
    ModuleNotFoundError,
    PermissionError,
    IsADirectoryError,
    OutputError,
)


def _os_error_line(exc: OSError) -> str:
    """Any other file error (a full disk under a write the run makes): the file and what to do, on one line."""
    where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
    return f"{where}{describe_os_error(exc)}"


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (DataLoader workers wrap it in a traceback: keep its last line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return exc.__class__.__name__
    last = lines[-1]
    if len(lines) > 1 and "Traceback" in str(exc):
        return last.split(": ", 1)[1] if last.startswith(("ValueError: ", "FileNotFoundError: ")) else last
    return " ".join(lines)


# Python option names in messages → the flags a CLI user typed.
_FLAGS = {
    name: flag(name)
    for name in (
        "k",
        "t",
        "method",
        "backend",
        "radii",
        "sample_size",
        "confidence",
        "seed",
        "strict",
        "device",
        "memory_budget",
        "error_bound",
        "precision",
        "extractor",
        "weights",
        "batch_size",
        "num_workers",
        "cache_dir",
        "save_features",
        "on_error",
    )
}


def _in_cli_terms(message: str) -> str:
    """``sample_size: expected …`` → ``--sample-size: expected …`` (the flag the user typed)."""
    name, sep, rest = message.partition(": ")
    return f"{_FLAGS[name]}{sep}{rest}" if sep and name in _FLAGS else message


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"eprmetrics: warning: {_in_cli_terms(_one_line(message))}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {*COMMANDS, "-h", "--help", "--version"}
    if argv and argv[0] not in commands:
        argv.insert(0, "run")  # `eprmetrics REAL FAKE` is `eprmetrics run REAL FAKE`
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:  # one line, and argparse's exit status
        print(f"eprmetrics: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.command is None:
        parser.print_help()
        return 2
    if not args.debug:  # warnings as one line in CLI terms, not Python source lines
        warnings.showwarning = _show_warning
    try:
        return COMMAND_FUNCTIONS[args.command](args)
    except _USER_ERRORS as exc:
        if args.debug:
            traceback.print_exc()
        print(f"eprmetrics: error: {_in_cli_terms(_one_line(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eprmetrics: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file written or read on the way (ENOSPC, EROFS, EFBIG…), not a bug of the input
        if args.debug:
            traceback.print_exc()
        print(f"eprmetrics: error: {_os_error_line(exc)}", file=sys.stderr)
        return 2
