"""mkdocs hooks, so that the site cannot drift from the code or from the README:

- ``<!-- fields ALGO -->`` in a page becomes the tables of that algorithm's hyperparameters and
  config fields, generated from the code (names, defaults, ranges and help texts): what
  ``qlearn train --algo ALGO --help`` says;
- ``<!-- readme TITLE -->`` becomes the README's section whose heading starts with TITLE (its
  measured results blocks and figures included; the figures are added to the site), so the
  experiments and their numbers live in one place.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

FIELDS = re.compile(r"<!-- fields ([\w.]+)(?: (\w+) (\w+))? -->")
README_SECTION = re.compile(r"<!-- readme (.+?) -->")
ROOT = Path(__file__).resolve().parents[1]
FIGURES = "experiments/figures"


def _cell(value: object) -> str:
    text = "x".join(map(str, value)) if isinstance(value, tuple) else f"{value}"
    return f"`{text}`" if text else "`()`"


def fields_tables(name: str, config: str | None = None, hparams: str | None = None) -> str:
    """The tables of algorithm ``name`` (``qlearn.algos.get``), or of the classes ``config``
    and ``hparams`` of module ``name``."""
    import importlib

    from qlearn import algos

    if config is None:
        algorithm = algos.get(name)
        config_cls, hparams_cls = algorithm.config, algorithm.hparams
    else:
        module = importlib.import_module(name)
        config_cls, hparams_cls = getattr(module, config), getattr(module, hparams)
    lines = [
        "Hyperparameters (traced: `--hp` / `--grid` / `--dist`; a grid over them is one compile):",
        "",
        "| name | default | range | meaning |",
        "|---|---|---|---|",
    ]
    for f in dataclasses.fields(hparams_cls):
        meta = f.metadata
        lines.append(f"| `{f.name}` | {_cell(f.default)} | {meta['range']} | {meta['help']} |")
    lines += [
        "",
        "Config fields (static: `--cfg`; in a grid, one compiled group per value):",
        "",
        "| name | default | meaning |",
        "|---|---|---|",
    ]
    for f in dataclasses.fields(config_cls):
        lines.append(f"| `{f.name}` | {_cell(f.default)} | {f.metadata.get('help', '')} |")
    return "\n".join(lines)


def readme_section(title: str) -> str:
    """The README's ``## TITLE...`` section, one heading level up, its links into docs/ made
    relative to the site."""
    text = (ROOT / "README.md").read_text()
    sections = re.split(r"(?m)^(?=## )", text)
    found = [sec for sec in sections if sec.startswith(f"## {title}")]
    if len(found) != 1:
        raise ValueError(f"README.md has {len(found)} sections titled {title!r}")
    body = found[0].split("\n", 1)[1]
    lines, code = [], False
    for line in body.splitlines():
        code ^= line.startswith("```")
        if not code and line.startswith("### "):
            line = line[1:]
        lines.append(line)
    return "\n".join(lines).replace("](docs/", "](")


def on_page_markdown(markdown: str, **_: object) -> str:
    markdown = FIELDS.sub(lambda m: fields_tables(*m.groups()), markdown)
    return README_SECTION.sub(lambda m: readme_section(m.group(1)), markdown)


def on_files(files: Any, config: Any) -> Any:
    """The README's figures, served at the same relative paths as in the repository."""
    from mkdocs.structure.files import File

    for png in sorted((ROOT / FIGURES).glob("*.png")):
        files.append(
            File(
                f"{FIGURES}/{png.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files
