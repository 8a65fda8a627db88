"""The lifecycle of a run directory: make it ready for a spec (refusing another run's or
other programs' files), record the spec and provenance, read them back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qlearn.runs.files import provenance, write_json
from qlearn.spec import Spec

CHUNKS = "chunks"


class RunDirError(RuntimeError):
    """The output directory cannot be used for this run."""


def first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
    return f"{where}: {a!r} there, {b!r} here"


OUTPUTS = (
    "metrics.npz",
    "summary.json",
    "records.csv",
    "manifest.json",
    *(
        f"{name}.{ext}"
        for name in ("learning_curves", "sensitivity", "heatmap", "search")
        for ext in ("png", "pdf")
    ),
)


def prepare(path: str | Path, spec: Spec, *, overwrite: bool = False) -> bool:
    """Make ``path`` ready for the run ``spec``.

    Records the spec (config.json) at once. Returns True if ``path`` already holds this exact
    run, finished (nothing to do). Keeps the
    finished chunks of an unfinished run of the same spec (it resumes). Raises
    :class:`RunDirError` if it holds a different run or other files, unless ``overwrite``
    (which deletes the old run's files, chunks included).
    """
    path = Path(path)
    config_file = path / "config.json"
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} is a file, not a directory")
    if path.exists() and any(path.iterdir()):
        if not config_file.exists():
            if not overwrite:
                raise RunDirError(
                    f"{path} is not empty and holds no qlearn run; choose another "
                    "--out or pass --overwrite"
                )
        else:
            existing = read_meta(path)["spec"]
            if Spec.from_json(existing) != spec:
                if not overwrite:
                    raise RunDirError(
                        f"{path} already holds a different run ("
                        f"{first_difference(existing, spec.to_json())}); choose another --out "
                        "or pass --overwrite"
                    )
            elif (path / "summary.json").exists() and not overwrite:
                return True
            if overwrite:
                for chunk in (path / CHUNKS).glob("*"):
                    chunk.unlink()
                config_file.unlink()
        for name in OUTPUTS:
            (path / name).unlink(missing_ok=True)
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / CHUNKS).mkdir(exist_ok=True)
        start(path, spec)
    except OSError as e:
        raise RunDirError(f"cannot write to {path}: {e.strerror or e}") from None
    return False


def read_meta(path: Path) -> dict[str, Any]:
    """``path/config.json`` of a run directory: {"spec": ..., "provenance": ...}. Raises
    :class:`RunDirError` naming the file when it is not JSON or not a qlearn run's config
    (the file is left as it is)."""
    file = path / "config.json"
    try:
        meta = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(
            f"{path} holds something that is not a qlearn run: {file} is not valid JSON ({e}); "
            "choose another --out"
        ) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("spec"), dict):
        raise RunDirError(
            f"{path} holds something that is not a qlearn run: {file} has no qlearn spec; "
            "choose another --out"
        )
    return meta


def start(path: Path, spec: Spec, argv: list[str] | None = None) -> None:
    """Record the spec and provenance of a new (or resumed: kept as first written) run."""
    if not (path / "config.json").exists():
        write_json(path / "config.json", {"spec": spec.to_json(), "provenance": provenance(argv)})
