"""Packaging: pyproject.toml gives ranges, constraints.txt the exact tested set inside them, and CI installs exactly
as the README says."""

import re
import tomllib

from packaging.requirements import Requirement

from tests.helpers import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
#: What `pip install -e ".[test]"` installs, and so what CI tests.
TESTED = [*PROJECT["dependencies"], *(spec for extra in ("search", "slurm", "test")
                                       for spec in PROJECT["optional-dependencies"][extra])]


def _pins() -> dict[str, str]:
    lines = (line.strip() for line in (REPO / "constraints.txt").read_text().splitlines())
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    return {_normalised(name): version for name, version in pins.items()}


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_dependencies_are_ranges_and_the_constraints_pin_a_version_inside_each():
    pins = _pins()
    for spec in map(Requirement, TESTED):
        if spec.name == "tlrun":  # test = tlrun[search,slurm] + ...
            continue
        assert not any(s.operator == "==" for s in spec.specifier), f"{spec}: a range, not a pin"
        assert spec.specifier, f"{spec}: the tested version is the lower bound"
        assert spec.specifier.contains(pins[_normalised(spec.name)]), f"{spec} excludes the tested version"


def test_optuna_comes_with_the_search_extra_only_and_torchmetrics_is_not_asked_for():
    names = {Requirement(spec).name for spec in PROJECT["dependencies"]}
    assert "optuna" not in names and "torchmetrics" not in names
    assert [Requirement(spec).name for spec in PROJECT["optional-dependencies"]["search"]] == ["optuna"]
    assert "tlrun[search,slurm]" in PROJECT["optional-dependencies"]["test"]


def test_ci_runs_the_readme_s_test_command():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^python3 -m venv \.venv && .*$", readme, flags=re.MULTILINE)
    assert len(commands) == 2 and all("pip install -q -c constraints.txt -e " in command for command in commands)
    assert commands[1] in (REPO / ".ci" / "run").read_text().splitlines()
