"""The README's promises that code can check: the method table matches conf/, CI runs the README's command."""

from __future__ import annotations

import re

from tlrun.config import method_table

from .conftest import REPO


def _readme() -> str:
    return (REPO / "README.md").read_text()


def test_readme_method_table_matches_the_configs():
    block = re.search(r"<!-- method-table:start -->\n```\n(.*?)\n```\n<!-- method-table:end -->", _readme(), re.S)
    assert block, "README lost its method table markers"
    assert block.group(1) == method_table(), "regenerate the README table from `tlrun --help`"


def test_ci_runs_the_readme_test_command():
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command in _readme()
    assert "pytest" in ci_command and ".[test]" in ci_command
