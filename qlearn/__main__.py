"""``python -m qlearn`` and the ``qlearn`` command. Joins a multi-host run (if asked) before
importing anything that starts a JAX backend."""

import sys


def console() -> None:
    from qlearn import distributed

    if sys.argv[1:2] == ["sweep"]:
        try:
            distributed.initialize_from_argv(sys.argv[2:])
        except ValueError as e:
            print(f"qlearn: error: {e}", file=sys.stderr)
            sys.exit(2)
    from qlearn.cli import main

    sys.exit(main())


if __name__ == "__main__":
    console()
