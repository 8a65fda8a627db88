"""mkdocs hook: ``<!-- fields ALGO -->`` in a page becomes the tables of that algorithm's
hyperparameters and config fields, generated from the code (names, defaults, ranges and help
texts), so the pages cannot drift from what ``qlearn train --algo ALGO --help`` says."""

from __future__ import annotations

import dataclasses
import re

FIELDS = re.compile(r"<!-- fields ([\w.]+)(?: (\w+) (\w+))? -->")


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


def on_page_markdown(markdown: str, **_: object) -> str:
    return FIELDS.sub(lambda m: fields_tables(*m.groups()), markdown)
