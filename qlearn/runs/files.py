"""Files of a run directory, written so that a killed process never leaves half a file:
atomic writes (a temporary file, then a rename) of bytes, JSON and CSV, and the provenance
(versions, backend, devices, git commit, command) recorded beside every result."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax

import qlearn

OUTPUT_DIRS = ("experiments/figures/", "experiments/results/", "benchmarks/results/")
"""Tracked folders of measured outputs: changes there do not make a checkout dirty."""


# The x86 instruction-set extensions between which XLA:CPU's code generator chooses (and every
# avx512*). Two CPUs that both report "AMD EPYC" can differ in them, and then in the last bits
# of their floats: seen between the EPYC that wrote tests/golden/ first and a family-26 one.
ISA = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "amx_bf16", "amx_tile")


def cpu() -> dict[str, str]:
    """The host CPU as far as XLA:CPU's arithmetic depends on it: ``model`` (name, family and
    model number) and ``isa`` (the extensions of :data:`ISA` it has, sorted), read from
    /proc/cpuinfo; only the processor name where there is none."""
    cpuinfo = Path("/proc/cpuinfo")
    info: dict[str, str] = {}
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    name = info.get("model name", platform.processor())
    flags = info.get("flags", "").split()
    return {
        "model": f"{name} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})",
        "isa": " ".join(sorted(f for f in set(flags) if f in ISA or f.startswith("avx512"))),
    }


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """Versions, backend, devices, CPU and git commit: what else a bitwise re-run depends on."""
    root = Path(qlearn.__file__).resolve().parent.parent
    commit, dirty = None, None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        # the experiments' own outputs (figures, results files) are not changes to the code
        dirty = any(not line[3:].startswith(OUTPUT_DIRS) for line in changed)
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "qlearn": qlearn.__version__,
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "processes": jax.process_count(),
        "cpu": cpu(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit,
        "git_dirty": dirty,
        "command": list(sys.argv if argv is None else argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write an experiment's numbers as JSON, atomically (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, report)
    return path


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, allow_nan=True) + "\n").encode())


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows (dicts with the same keys) as CSV, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue().encode())
    return path
