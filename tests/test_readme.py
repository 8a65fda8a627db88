"""The README quotes what the experiments measured: every results block of README.md is
rendered, character for character, from the results file its experiment (or ``make demo``)
wrote — so a re-run that moves a number cannot leave the README behind — and every results file
says which command, commit and backend it comes from."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))

import record  # noqa: E402

README = (ROOT / "README.md").read_text()


def test_every_results_file_is_quoted_and_every_block_has_a_file():
    files = {f.stem for f in record.RESULTS.glob("*.json")}
    assert set(record.blocks(README)) == files == set(record.RENDER)


@pytest.mark.parametrize("name", sorted(record.RENDER))
def test_a_results_block_says_what_its_file_says(name):
    expected = record.RENDER[name](record.load(name))
    assert record.blocks(README)[name] == expected, (
        f"README's '{name}' block is stale: run `python experiments/record.py readme`"
    )


@pytest.mark.parametrize("name", sorted(record.RENDER))
def test_a_results_file_names_its_command_commit_and_backend(name):
    result = record.load(name)
    provenance = result["provenance"]
    assert result["commit"] == provenance["git_commit"] and result["command"]
    assert provenance["command"] and provenance["backend"] and provenance["jax"]
    assert provenance["git_commit"] and not provenance["git_dirty"], provenance
