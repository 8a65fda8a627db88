"""Chunks, the unit of work a sweep writes, checks and resumes: one ``.npz`` per finished batch
of runs with a SHA-256 of its contents (a corrupt or partial file is detected, never used),
the manifest of the finished ones, and the assembly of a complete set into metrics."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np

from qlearn.runs.directory import CHUNKS
from qlearn.runs.files import atomic_write, write_json
from qlearn.spec import Spec


def checksum(runs: np.ndarray, metrics: dict[str, np.ndarray]) -> str:
    """SHA-256 of a chunk's run indices and metric arrays (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, arr in [("runs", runs), *sorted(metrics.items())]:
        arr = np.ascontiguousarray(arr)
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def write_chunk(
    path: Path, group: int, runs: np.ndarray, metrics: dict[str, np.ndarray], process: int = 0
) -> Path:
    """Atomically write the metrics ([n, T] per name) of runs ``runs`` [n] of ``group``.

    Runs are numbered within the group as ``config_position * num_seeds + seed``.
    """
    runs = np.asarray(runs, np.int64)
    digest = checksum(runs, metrics)
    name = f"g{group:03d}-r{runs[0]:07d}-{runs[-1]:07d}-p{process:03d}-{digest[:8]}.npz"
    buf = io.BytesIO()
    np.savez(buf, runs=runs, sha256=np.array(digest), **{f"m_{k}": v for k, v in metrics.items()})
    atomic_write(path / CHUNKS / name, buf.getvalue())
    return path / CHUNKS / name


@dataclasses.dataclass
class Chunk:
    file: str
    group: int
    runs: np.ndarray
    metrics: dict[str, np.ndarray]
    sha256: str


class CorruptChunk(ValueError):
    """A chunk file that cannot be read or whose checksum does not match its contents."""


def read_chunk(file: Path) -> Chunk:
    """Read and verify one chunk file; raises :class:`CorruptChunk`."""
    try:
        group = int(file.name.split("-")[0][1:])
        with np.load(file, allow_pickle=False) as data:
            runs = data["runs"]
            digest = str(data["sha256"])
            metrics = {k[2:]: data[k] for k in data.files if k.startswith("m_")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, IndexError) as e:
        raise CorruptChunk(f"{file.name} cannot be read ({type(e).__name__}: {e})") from None
    if checksum(runs, metrics) != digest:
        raise CorruptChunk(f"{file.name}: its contents do not match its SHA-256")
    return Chunk(file.name, group, runs, metrics, digest)


def scan_chunks(path: Path, *, quarantine: bool) -> tuple[list[Chunk], list[str]]:
    """Every valid chunk of a run directory, and a message per corrupt one.

    With ``quarantine`` a corrupt file is renamed ``*.corrupt`` (kept for inspection, never
    read again); its runs count as not done and are recomputed.
    """
    good, bad = [], []
    for file in sorted((path / CHUNKS).glob("*.npz")):
        try:
            good.append(read_chunk(file))
        except CorruptChunk as e:
            bad.append(str(e))
            if quarantine:
                os.replace(file, file.with_suffix(".corrupt"))
    return good, bad


def write_manifest(path: Path, spec: Spec, chunks: list[Chunk], complete: bool) -> None:
    """manifest.json: the finished chunks (file, group, runs, SHA-256) and progress."""
    done = sum(len(np.unique(c.runs)) for c in chunks)
    write_json(
        path / "manifest.json",
        {
            "complete": complete,
            "runs_total": spec.num_runs,
            "runs_done": min(done, spec.num_runs),
            "chunks": [
                {"file": c.file, "group": c.group, "runs": len(c.runs), "sha256": c.sha256}
                for c in chunks
            ],
        },
    )


def done_runs(spec: Spec, chunks: list[Chunk]) -> list[np.ndarray]:
    """Per group, a bool [runs] mask of the runs some valid chunk holds."""
    masks = [np.zeros(len(g.configs) * spec.num_seeds, bool) for g in spec.groups]
    for c in chunks:
        if c.group < len(masks) and np.all(c.runs < len(masks[c.group])):
            masks[c.group][c.runs] = True
    return masks


def assemble(spec: Spec, chunks: list[Chunk]) -> dict[str, np.ndarray]:
    """The metrics [config, seed, time] of a complete set of chunks."""
    seeds, num_configs = spec.num_seeds, spec.num_configs
    out: dict[str, np.ndarray] = {}
    for g, group in enumerate(spec.groups):
        mine = [c for c in chunks if c.group == g]
        for name in mine[0].metrics:
            rows = np.concatenate([c.metrics[name] for c in mine])
            runs = np.concatenate([c.runs for c in mine])
            configs = list(group.configs)
            flat = np.empty((len(configs) * seeds, *rows.shape[1:]), rows.dtype)
            flat[runs] = rows
            if name not in out:
                out[name] = np.empty((num_configs, seeds, *rows.shape[1:]), rows.dtype)
            out[name][configs] = flat.reshape(len(configs), seeds, -1)
    return out
