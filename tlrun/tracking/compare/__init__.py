"""``tlrun compare``: a paper-style table (methods × tasks, the average last) and plots from the MLflow store.

The command and its documentation: :mod:`~tlrun.tracking.compare.command`. Below it, one layer each:
:mod:`~tlrun.tracking.compare.select` (which runs), :mod:`~tlrun.tracking.compare.published` (a recipe's published
numbers), :mod:`~tlrun.tracking.compare.table` (the statistics), :mod:`~tlrun.tracking.compare.plots` and
:mod:`~tlrun.tracking.compare.render` (text and files).
"""

from tlrun.tracking.compare.command import compare_sweep, main, parse_settings, report, wide_console
from tlrun.tracking.compare.render import write_files
from tlrun.tracking.compare.select import Selection, select_runs
from tlrun.tracking.compare.table import Comparison, Published, comparison_table, format_value

__all__ = ["Comparison", "Published", "Selection", "compare_sweep", "comparison_table", "format_value", "main",
           "parse_settings", "report", "select_runs", "wide_console", "write_files"]
