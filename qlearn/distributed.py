"""Multi-host start-up: join a ``jax.distributed`` cluster before anything touches a backend.

It must run before gymnax (or any JAX array) is imported, so the ``qlearn`` command calls it
first, from its entry point, on its raw arguments.
"""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The multi-host options of ``qlearn sweep``."""
    parser.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="multi-host: process 0's address (SLURM and other clusters are detected without it)",
    )
    parser.add_argument("--num-processes", type=int, default=None)
    parser.add_argument("--process-id", type=int, default=None)


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None) -> bool:
    """Join a multi-process run: with ``coordinator`` (and ``num_processes``, ``process_id``),
    or when the environment says there are several processes (SLURM with more than one task,
    or JAX_COORDINATOR_ADDRESS); JAX then sees every host's devices. Returns whether it did.

    Raises ValueError for an inconsistent set of options.
    """
    cluster = int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "JAX_COORDINATOR_ADDRESS" in (
        os.environ
    )
    if coordinator is None and not cluster:
        if num_processes not in (None, 1) or process_id is not None:
            raise ValueError("--num-processes / --process-id need --coordinator HOST:PORT")
        return False
    if coordinator is not None:
        if num_processes is None or process_id is None:
            raise ValueError("--coordinator needs --num-processes and --process-id")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"--process-id = {process_id} must be in [0, {num_processes})")
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts talk over TCP
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )
    return True


def initialize_from_argv(argv: list[str]) -> bool:
    """:func:`initialize` from the multi-host options among ``argv`` (others are ignored)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    known, _ = parser.parse_known_args(argv)
    return initialize(known.coordinator, known.num_processes, known.process_id)
