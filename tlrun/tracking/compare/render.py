"""The comparison as text and files: a Rich table for the terminal, Markdown, LaTeX (booktabs), CSV, and the
plots (:mod:`tlrun.tracking.compare.plots`), written together by :func:`write_files`."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from tlrun.tracking.compare.plots import plot_per_task, plot_vs_param
from tlrun.tracking.compare.table import ARROW, Comparison, Row, format_value


def _cell_text(comparison: Comparison, row: Row, column: str, pm: str = " ± ") -> str | None:
    """The text of a cell (None when empty)."""
    unit, delta = comparison.unit, row.kind == "delta"
    if column == "avg":
        return None if row.avg is None else format_value(row.avg, unit, signed=delta)
    cell = row.cells.get(column)
    if cell is None:
        return None
    text = format_value(cell.mean, unit, signed=delta)
    if cell.std is not None:
        text += pm + format_value(cell.std, unit)
    if row.kind == "ours" and cell.n != comparison.usual_n:
        text += f" (n={cell.n})"
    return text


def rich_table(comparison: Comparison) -> Any:
    from rich.table import Table

    table = Table(title=comparison.title())
    table.add_column("method")
    for column in [*comparison.tasks, "avg"]:
        table.add_column(column, justify="right")
    for row in comparison.rows:
        cells = []
        for column in [*comparison.tasks, "avg"]:
            text = _cell_text(comparison, row, column) or "—"
            cells.append(f"[bold green]{text}[/]" if column in row.best else text)
        table.add_row(row.label, *cells, style="dim" if row.kind != "ours" else None)
    return table


def markdown(comparison: Comparison) -> str:
    columns = [*comparison.tasks, "avg"]
    lines = [f"**{comparison.title()}**", "", "| method | " + " | ".join(columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for row in comparison.rows:
        cells = []
        for column in columns:
            text = _cell_text(comparison, row, column) or "—"
            cells.append(f"**{text}**" if column in row.best else text)
        lines.append(f"| {row.label.replace('|', '/')} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + comparison.notes()) + "\n"


def _tex_escape(text: str) -> str:
    text = re.sub(r"([&%$#_{}])", r"\\\1", text)
    return text.replace(ARROW, r"$\to$").replace("Δ", r"$\Delta$").replace("~", r"\textasciitilde{}")


def latex(comparison: Comparison) -> str:
    columns = [*comparison.tasks, "avg"]
    lines = [f"% {comparison.title()}. {' '.join(comparison.notes())}", r"% needs \usepackage{booktabs}",
             r"\begin{tabular}{l" + "r" * len(columns) + "}", r"\toprule",
             "method & " + " & ".join(_tex_escape(c) for c in columns) + r" \\", r"\midrule"]
    for row in comparison.rows:
        cells = []
        for column in columns:
            text = _cell_text(comparison, row, column, pm=r" $\pm$ ")
            text = "--" if text is None else text.replace(" (n=", " (n = ")
            cells.append(rf"\textbf{{{text}}}" if column in row.best else text)
        lines.append(_tex_escape(row.label) + " & " + " & ".join(cells) + r" \\")
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"


def write_csv(comparison: Comparison, path: Path) -> None:
    """One line per row: label, kind, method, metric, unit, then ``<task> mean``, ``<task> std``, ``<task> n``
    for each task, and ``avg`` (full precision, in the table's unit; empty when absent)."""
    header = ["label", "kind", "method", "metric", "unit"]
    for task in comparison.tasks:
        header += [f"{task} mean", f"{task} std", f"{task} n"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header + ["avg"])
        for row in comparison.rows:
            line = [row.label, row.kind, row.method, comparison.metric, comparison.unit]
            for task in comparison.tasks:
                cell = row.cells.get(task)
                line += ["", "", ""] if cell is None else [repr(cell.mean), "" if cell.std is None else repr(cell.std),
                                                          cell.n if row.kind == "ours" else ""]
            writer.writerow(line + ["" if row.avg is None else repr(row.avg)])


def file_safe(name: str) -> str:
    """``name`` as a file name: every character but letters, digits, ``.`` and ``-`` replaced by ``_``."""
    return re.sub(r"[^\w.-]", "_", name)


def write_files(comparison: Comparison, out_dir: Path) -> list[Path]:
    """Write the Markdown, CSV and LaTeX tables and the plots into ``out_dir``; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / name for name in ("comparison.md", "comparison.csv", "comparison.tex", "per_task.png")]
    files[0].write_text(markdown(comparison), encoding="utf-8")
    write_csv(comparison, files[1])
    files[2].write_text(latex(comparison), encoding="utf-8")
    plot_per_task(comparison, files[3])
    if len(comparison.varying) == 1:
        param = comparison.varying[0]
        files.append(out_dir / f"{comparison.metric}_vs_{file_safe(param)}.png")
        plot_vs_param(comparison, param, files[-1])
    return files
