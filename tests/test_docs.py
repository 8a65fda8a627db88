"""The documentation site builds with ``mkdocs build --strict``: a broken page link, an API
reference to something that does not exist or a malformed docstring fails the suite."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(root: Path, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_site_builds_strictly(tmp_path):
    result = build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("qlearn.sweep.run", "qlearn.trackers.TensorBoard", "qlearn.compare.compare"):
        assert name in api  # the reference is generated from the docstrings
    dqn_page = (tmp_path / "site" / "algorithms" / "dqn" / "index.html").read_text()
    from qlearn.algos import dqn

    for f in ("lr", "target_tau", "double_q", "buffer_size"):  # the tables, from the code
        assert f"<code>{f}</code>" in dqn_page, f
    assert dqn.DQNHParams.__dataclass_fields__["target_tau"].metadata["help"] in dqn_page
    assert "<!-- fields" not in dqn_page
    # the experiments page is the README's section: its results and every figure it shows
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Experiments", 1)[1].split("\n## ", 1)[0]
    page = (tmp_path / "site" / "experiments" / "index.html").read_text()
    assert page.count("measured at commit") == section.count("measured at commit") > 5
    for figure in re.findall(r"\]\(experiments/figures/([\w.-]+\.png)\)", section):
        assert f'src="figures/{figure}"' in page
        assert (tmp_path / "site" / "experiments" / "figures" / figure).stat().st_size > 0


def test_a_broken_reference_fails_the_build(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    with open(copy / "docs" / "api.md", "a") as f:
        f.write("\n::: qlearn.no_such_module\n")
    result = build(copy, tmp_path / "site")
    assert result.returncode != 0
    assert "no_such_module" in result.stdout + result.stderr
