"""The ``ebt`` command line: ``ebt train | eval | generate | think | bench | presets``.

Each subcommand lives in :mod:`ebtkit.commands` as a module with ``add_parser(subparsers)`` and
``run(args) -> int``. Bad input gives a one-line ``ebt: error: ...`` and exit status 2 (a traceback only with
``--debug``); nothing is written on such errors.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from .core import dist
from .core.checkpoint import CheckpointError, NonFiniteError
from .core.device import DEVICE_HELP, resolve_device
from .tasks import using_device
from .training.rundir import RunError

# exceptions whose message is written for the user (one line naming the file or key); anything else is a bug
# and is reported as an internal error with its type
EXPECTED = (ValueError, CheckpointError, NonFiniteError, RunError, OSError)

# commands that run a model: each takes --device (train has its own, passed to fit)
DEVICE_COMMANDS = ("train", "eval", "generate", "think", "bench")

COMMANDS = ("train", "eval", "generate", "think", "bench", "presets", "sweep", "report", "prepare", "data", "push")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"ebt: error: {message} (see '{self.prog} --help')\n")


def version() -> str:
    """The installed distribution's version (``importlib.metadata``), else ``ebtkit.__version__`` (a source tree
    that is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed
    try:
        return installed("ebtkit")
    except PackageNotFoundError:
        from .core import __version__
        return __version__


def build_parser() -> Parser:
    p = Parser(prog="ebt", description="Energy-Based Transformers: train, evaluate, think, generate, benchmark.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.add_argument("--version", action="version", version=f"ebt {version()}", help="print 'ebt VERSION' and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        mod = importlib.import_module(f"ebtkit.commands.{name}")
        sp = mod.add_parser(sub)
        sp.set_defaults(_run=mod.run)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        if name in DEVICE_COMMANDS and not any("--device" in a.option_strings for a in sp._actions):
            sp.add_argument("--device", default="auto", help=f"where the model runs: {DEVICE_HELP}")
    return p


class Terminated(SystemExit):
    """SIGTERM, raised where the process is: it unwinds like an exception (a run cleans up what it must not
    leave) and exits with status 128 + the signal's number."""


def _terminate(signum, frame):
    raise Terminated(128 + signum)


def _stopped(what: str, e: BaseException) -> str:
    """The line a signal leaves: what stopped the command, and for ``ebt train`` the last checkpoint's step and
    the command that continues it (``ebtkit.training.loop.stopped_note``, attached to the exception)."""
    note = getattr(e, "ebt_resume", None)
    return f"ebt: {what}" + (f"; {note}" if note else "")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)     # recorded by `ebt train` in the run
    return execute(args)


def execute(args: argparse.Namespace) -> int:
    """Run a parsed command with the error contract: one ``ebt: error:`` line and status 2 (a rank started by
    ``ebt train --nproc-per-node`` hands the line to its launcher instead, :func:`ebtkit.core.dist.fail`); a
    failing process leaves its process group first, so its peers do not hang in a collective."""
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        if getattr(args, "command", None) in DEVICE_COMMANDS and args.command != "train":
            with using_device(resolve_device(args.device)):     # a device that is not there fails here
                return int(args._run(args) or 0)
        return int(args._run(args) or 0)
    except KeyboardInterrupt as e:
        print(_stopped("interrupted (SIGINT)", e), file=sys.stderr)
        return 130
    except Terminated as e:
        print(_stopped("terminated (SIGTERM)", e), file=sys.stderr)
        raise
    except BrokenPipeError:            # output piped into e.g. `head`, which has stopped reading
        sys.stdout = open(os.devnull, "w")
        return 0
    except Exception as e:  # noqa: BLE001 — every failure becomes one line unless --debug
        if getattr(args, "debug", False):
            dist.teardown()
            raise
        if not dist.fail(one_line(e)):
            print(f"ebt: error: {one_line(e)}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def one_line(e: BaseException) -> str:
    """The first line of an error's message; unexpected exception types are labelled internal errors."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, EXPECTED):
        return msg
    return f"internal error ({type(e).__name__}: {msg}); rerun with 'ebt --debug ...' for the traceback"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
