"""The ``qlearn`` command: train, sweep, reproduce, show, plot, export.

Every input is validated before anything compiles; a bad value gets one line naming the field
and what is accepted, and exit status 2.

``arguments`` turns the command line's ``name=value`` text into configs, grids and
distributions; ``commands`` runs each subcommand; ``parser`` declares the flags.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from qlearn import runs, trackers
from qlearn.cli.commands import STOP
from qlearn.cli.parser import algo_in, build_parser

EXIT_USAGE = 2


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM: like Ctrl-C. The flag makes it stick: Python discards a KeyboardInterrupt that
    fires inside a garbage-collection callback (JAX keeps one), so a sweep also looks at
    :data:`qlearn.cli.commands.STOP` after each chunk, and ``main`` after the command."""
    STOP.set()
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _interrupted(args: Any) -> int:
    out = getattr(args, "out", None)
    where = f" in {out}" if out else ""
    print(
        f"qlearn: interrupted; the finished chunks are kept{where}: run the same command "
        "again to resume",
        file=sys.stderr,
    )
    return 130


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(algo_in(argv)).parse_args(argv)
    STOP.clear()
    previous = signal.signal(signal.SIGTERM, _terminate)  # like Ctrl-C: clean up, then exit
    try:
        status = args.func(args)
    except (ValueError, runs.RunDirError, trackers.TrackerError) as e:
        print(f"qlearn: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return _interrupted(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return _interrupted(args) if STOP.is_set() else status
