"""The committed results of the experiments and of ``make demo`` (``experiments/results/*.json``)
and of the throughput and peer benchmarks (``benchmarks/results/{throughput,peers}.json``), and
the README blocks that quote them.

Every number the README quotes for an experiment or the demo sits in a block

    <!-- results NAME -->
    ...text rendered from experiments/results/NAME.json...
    <!-- /results -->

rendered from the results file that the experiment wrote (its numbers, the command, the commit
and the backend they were measured at) by the ``readme(report)`` of the script that wrote it:
typed parts (:class:`Text`, :class:`Table`) that this module's one renderer turns into Markdown
(:func:`to_markdown`), so an experiment's output and its block change in one file.
``tests/test_readme.py`` checks that each block says exactly what its file says, so a re-run that
moves a number cannot leave the README behind:

    python experiments/cartpole_dqn.py          # writes experiments/results/cartpole_dqn.json
    python experiments/record.py demo runs/demo # the demo's run directory -> results/demo.json
    python experiments/record.py readme         # re-render every block of README.md
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
BLOCK = re.compile(r"(<!-- results (\w+) -->\n)(.*?)(<!-- /results -->)", re.S)


def save(
    path: str | Path | None, report: dict[str, Any], provenance: dict[str, Any] | None = None
) -> Path | None:
    """Write ``report`` with its provenance (command, commit, versions, backend) as a results
    file, atomically; ``path`` '' or None writes nothing (a run that is not the documented one).
    ``provenance``: :func:`qlearn.runs.provenance` taken when the experiment started (the
    commit it ran), else taken now."""
    if not path:
        return None
    from qlearn import runs

    return runs.write_report(Path(path), _stamped(provenance or runs.provenance(), report))


def _stamped(provenance: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """A results file: the commit and command it was measured with first, then the numbers."""
    command = " ".join(provenance.get("command") or [])
    return {
        "commit": provenance.get("git_commit"),
        "command": command,
        "provenance": provenance,
    } | (report)


def load(name: str) -> dict[str, Any]:
    """The results file ``name`` (from benchmarks/results/ for :data:`FROM_BENCHMARKS`)."""
    folder = BENCHMARKS if name in FROM_BENCHMARKS else RESULTS
    return json.loads((folder / f"{name}.json").read_text())


def at(report: dict[str, Any]) -> str:
    """Where a results file's numbers were measured: its commit, jax and backend."""
    prov = report["provenance"]
    commit = (prov.get("git_commit") or "unknown")[:7]
    dirty = " + uncommitted changes" if prov.get("git_dirty") else ""
    return f"measured at commit {commit}{dirty}, jax {prov['jax']}, {prov['backend']}"


def ci(values: list[float]) -> str:
    """A 95% interval to whole numbers: [lo, hi]."""
    return f"[{values[0]:.0f}, {values[1]:.0f}]"


def ci1(values: list[float]) -> str:
    """A 95% interval to one decimal."""
    return f"[{values[0]:.1f}, {values[1]:.1f}]"


def ci2(values: list[float]) -> str:
    """A 95% interval to two decimals."""
    return f"[{values[0]:.2f}, {values[1]:.2f}]"


def si(x: float) -> str:
    """3 significant figures with k / M: 61.2k, 750k, 1.53M, 389."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if x >= scale:
            v = x / scale
            return (
                f"{v:.2f}{suffix}"
                if v < 10
                else f"{v:.1f}{suffix}"
                if v < 100
                else f"{v:.0f}{suffix}"
            )
    return f"{x:.0f}"


@dataclasses.dataclass(frozen=True)
class Text:
    """A part of a README block: text as it is."""

    text: str

    def markdown(self) -> str:
        return self.text


@dataclasses.dataclass(frozen=True)
class Table:
    """A part of a README block: a Markdown table (first column left-aligned, the others
    right-aligned) and its note in parentheses."""

    header: list[str]
    rows: list[list[str]]
    note: str

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|---|" + "---:|" * (len(self.header) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + f"\n\n({self.note}.)\n"


def to_markdown(parts: list[Any]) -> str:
    """The README text of a block's typed parts (:class:`Text`, :class:`Table`)."""
    return "".join(part.markdown() for part in parts)


def demo_readme(r: dict[str, Any]) -> list[Any]:
    """``make demo`` (its results file is written by :func:`demo`, here)."""
    rows = "; ".join(
        f"{c['label']}: IQM {c['final_iqm']:.0f} {ci(c['final_iqm_ci95'])}, mean "
        f"{c['final_mean']:.0f}, diverged {c['diverged']}/{c['seeds']}"
        for c in r["configs"]
    )
    return [
        Text(
            f"Greedy return at the end ({r['runs']} runs × {r['env_steps_per_run']:,} env "
            f"steps, {r['lanes']} lanes; compile {r['compile_seconds']:.0f} s, run "
            f"{r['run_seconds']:.0f} s): {rows} ({at(r)}).\n"
        )
    ]


BENCHMARKS = ROOT / "benchmarks" / "results"
FROM_BENCHMARKS = (
    "throughput",
    "diagnostics_cost",
    "peers",
    "loss_cost",
    "loss_cost_breakout",
    "loss_cost_breakout_iqn",
    "suite_throughput",
    "optimistic_resets",
    "roofline",
)
"""The benchmark results the README quotes (from benchmarks/results/)."""


def names() -> list[str]:
    """Every quoted results file's name, its README block's name: all of experiments/results/
    and :data:`FROM_BENCHMARKS`."""
    return sorted([f.stem for f in RESULTS.glob("*.json")] + list(FROM_BENCHMARKS))


def script_of(report: dict[str, Any]) -> Path | None:
    """The experiment or benchmark script that wrote ``report`` (its command's
    ``experiments/NAME.py`` or ``benchmarks/NAME.py``), or None (``make demo``'s run)."""
    for token in report.get("command", "").split():
        path = Path(token)
        if path.suffix == ".py" and path.parent.name in ("experiments", "benchmarks"):
            return ROOT / path.parent.name / path.name
    return None


def readme_of(report: dict[str, Any]) -> Callable[[dict[str, Any]], list[Any]]:
    """The function that turns ``report`` into its README block's typed parts: the ``readme``
    of the script that wrote it (so an experiment's output and its block change in one
    file), :func:`demo_readme` for the demo."""
    script = script_of(report)
    if script is None:
        return demo_readme
    sys.path.insert(0, str(script.parent))
    try:
        module = importlib.import_module(script.stem)
    finally:
        sys.path.remove(str(script.parent))
    if not hasattr(module, "readme"):
        raise KeyError(f"{script.relative_to(ROOT)} has no readme(report) for its README block")
    return module.readme


def block_text(name: str) -> str:
    """What the README's block ``name`` must say: its results file through its script's
    ``readme``."""
    report = load(name)
    return to_markdown(readme_of(report)(report))


def render(text: str) -> str:
    """``text`` (the README) with every results block re-rendered from its file."""
    return BLOCK.sub(lambda m: m.group(1) + block_text(m.group(2)) + m.group(4), text)


def blocks(text: str) -> dict[str, str]:
    """name -> the text of each results block of ``text``."""
    return {m.group(2): m.group(3) for m in BLOCK.finditer(text)}


def demo(run_dir: str | Path, out: str | Path = RESULTS / "demo.json") -> Path | None:
    """The results file of ``make demo`` from its run directory (summary and provenance)."""
    sys.path.insert(0, str(ROOT))
    from qlearn import runs

    run = runs.load(run_dir)
    timing = run.summary["timing"]
    labels = runs.labels(run.spec)
    report = {
        "run_dir": str(run_dir),
        "runs": run.spec.num_runs,
        "lanes": run.spec.run_lanes,
        "env_steps_per_run": int(run.metrics["env_steps"][0, 0, -1]),
        "compile_seconds": timing["compile_seconds"],
        "run_seconds": timing["run_seconds"],
        "configs": [
            {
                "label": label,
                "final_iqm": c["final"]["iqm"],
                "final_iqm_ci95": c["final"]["iqm_ci95"],
                "final_mean": c["final"]["mean"],
                "diverged": c["diverged"],
                "seeds": c["seeds"],
            }
            for label, c in zip(labels, run.summary["configs"], strict=True)
        ],
    }
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the provenance of the run itself (its commit and command), not of this conversion
    path.write_text(json.dumps(_stamped(run.provenance, report), indent=2) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="record the demo's run directory (as results/demo.json)")
    d.add_argument("run_dir")
    d.add_argument(
        "--out",
        default=str(RESULTS / "demo.json"),
        help="where to write the record (make demo keeps it in the run directory; make "
        "demo-results updates the committed one)",
    )
    sub.add_parser("readme", help="re-render README.md's results blocks")
    args = parser.parse_args()
    if args.command == "demo":
        print(f"wrote {demo(args.run_dir, args.out)}")
    else:
        readme = ROOT / "README.md"
        readme.write_text(render(readme.read_text()))
        print(f"re-rendered {len(blocks(readme.read_text()))} results blocks of {readme}")


if __name__ == "__main__":
    main()
