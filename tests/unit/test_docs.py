"""The docs' promises that code can check: the README's method table matches conf/, CI runs the README's test
command, every relative link resolves, every docs page is reachable from a short README, and the contributing
page's source map matches the tree of ``tlrun/``."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from tlrun.config import method_table

from tests.helpers import REPO

README = REPO / "README.md"
CONTRIBUTING = REPO / "docs" / "contributing.md"
#: Every Markdown page whose links are checked.
PAGES = (README, REPO / "CHANGELOG.md", REPO / "benchmarks" / "README.md", *sorted((REPO / "docs").glob("*.md")))
MAX_README_LINES = 250

_FENCED = re.compile(r"^ *```.*?^ *```", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _readme() -> str:
    return README.read_text()


def _prose(text: str) -> str:
    """Markdown without its code (fenced blocks and inline spans), where links and headings are real."""
    return _INLINE_CODE.sub("", _FENCED.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation and symbols dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    """The anchors GitHub gives the headings of ``page`` (a repeated heading gets ``-1``, ``-2``...)."""
    found: dict[str, int] = {}
    names = []
    for heading in _HEADING.findall(_FENCED.sub("", page.read_text())):
        base = slug(heading)
        count = found.get(base, 0)
        names.append(f"{base}-{count}" if count else base)
        found[base] = count + 1
    return frozenset(names)


def relative_links(page: Path) -> list[str]:
    """The links of ``page`` to files of this repository (web addresses and e-mail left out)."""
    return [target for target in _LINK.findall(_prose(page.read_text())) if not re.match(r"[a-z]+:", target)]


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading with the anchor #{anchor} in {resolved.relative_to(REPO)}")
    return problems


def reachable_pages(start: Path) -> set[Path]:
    """The Markdown pages reached from ``start`` by following relative links, ``start`` included."""
    seen, todo = {start}, [start]
    while todo:
        page = todo.pop()
        for target in relative_links(page):
            path = target.partition("#")[0]
            linked = (page.parent / path).resolve() if path else page
            if linked.suffix == ".md" and linked.is_file() and linked not in seen:
                seen.add(linked)
                todo.append(linked)
    return seen


def source_map(text: str) -> set[str]:
    """The modules the contributing page's source map lists, as paths relative to ``tlrun/``.

    The map is an indented tree, two spaces a level, one entry a line (its first word): ``name/`` opens a package,
    ``name.py`` is a module of the package above it.
    """
    block = re.search(r"<!-- source-map:start -->\n```\n(.*?)\n```\n<!-- source-map:end -->", text, re.S)
    assert block, "docs/contributing.md lost its source-map markers"
    lines = block.group(1).splitlines()
    assert lines[0].split()[0] == "tlrun/", "the source map starts with tlrun/"
    folders: list[str] = []
    modules = set()
    for line in filter(str.strip, lines[1:]):
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        folders = folders[: depth - 1]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        else:
            modules.add("/".join([*folders, name]))
    return modules


def test_readme_method_table_matches_the_configs():
    block = re.search(r"<!-- method-table:start -->\n```\n(.*?)\n```\n<!-- method-table:end -->", _readme(), re.S)
    assert block, "README lost its method table markers"
    assert block.group(1) == method_table(), "regenerate the README table from `tlrun --help`"


def test_ci_runs_the_readme_test_command():
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command in _readme()
    assert "pytest" in ci_command and ".[test]" in ci_command


def test_readme_is_a_short_front_page():
    lines = len(_readme().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES}): move text to docs/"


def test_every_relative_link_resolves():
    problems = [f"{page.relative_to(REPO)}: {problem}" for page in PAGES for problem in broken_links(page)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_every_docs_page_is_reachable_from_the_readme():
    reached = reachable_pages(README.resolve())
    missing = [str(page.relative_to(REPO)) for page in PAGES if page.resolve() not in reached]
    assert not missing, f"pages no link from README.md leads to: {', '.join(missing)}"


def test_source_map_lists_every_module():
    tree = {str(path.relative_to(REPO / "tlrun")) for path in (REPO / "tlrun").rglob("*.py") if path.name != "__init__.py"}
    listed = source_map(CONTRIBUTING.read_text())
    problems = [f"{change} the source map in docs/contributing.md: {', '.join(sorted(modules))}"
                for change, modules in (("add to", tree - listed), ("remove from", listed - tree)) if modules]
    assert not problems, "\n".join(problems)


def test_github_anchors():
    assert slug("What `target_acc` means") == "what-target_acc-means"
    assert slug("One run on every GPU of a node: `trainer=ddp`") == "one-run-on-every-gpu-of-a-node-trainerddp"
    assert slug("The JDA paper on Office+Caltech10") == "the-jda-paper-on-officecaltech10"
