"""Multi-source DA on real multi-domain data: ``m3sda`` and ``mdan`` against ``dann`` and ``source_only`` on the
Office+Caltech10 SURF features, each of the four domains in turn the target of the other three pooled, over 3 seeds.

Added after the digits multi-source tables (``multi_source_digits.md``, ``multi_source_digits_targets.md``) had been
seen, as a check of those methods on data that was not synthesised for the comparison. No setting is chosen on these
tasks: every method runs with its default config, and one more ``dann`` row with the setting the tuning search of
``multi_source_tuning.py`` chose for ``dann`` on its digits task (read from ``multi_source_tuning.json`` by
``load_choices``, as ``multi_source_digits.py`` does). The data: ``dataset=office_caltech10`` (``features: surf``, the
dataset's default preprocessing ``rowsum_zscore``, the JDA release's protocol of the data README); ``backbone=auto``,
which on feature rows is ``identity``, so the network is the deep methods' default head alone (800 → 256-unit
bottleneck, linear + batch norm + ReLU → linear classifier). Each cell is a full tlrun run through
``deep_da_digits.run_rows`` (composed in-process, a temporary MLflow store, one torch thread, diagnostics off):
transductive protocol (every target sample is both unlabeled training data and test data), ``trainer.select=last``,
the methods' default 30 epochs, 0.1 of the pooled sources held out (the deep DA default).

Run by hand from the repository root with the project's venv:

    .venv/bin/python benchmarks/multi_source_office_caltech.py            # seeds 0 1 2, 2 runs at once
    .venv/bin/python benchmarks/multi_source_office_caltech.py --root DIR --seeds 0 --jobs 1 --output /tmp/oc.md

``--root`` is the folder holding the four ``*_SURF_L10.mat`` files (default ``office_caltech10_surf`` in
``$TLRUN_SHARED_DATA``, else in ``shared/data`` beside the checkout, as ``jda_office_caltech.py`` finds it);
without them the script exits with a message. Writes benchmarks/results/multi_source_office_caltech.md (or
``--output``) and prints it; the results file's "Reading:" paragraph is written by hand after the run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deep_da_digits import publish, run_rows, seed_cells  # noqa: E402  (the benchmarks folder is no package)
from multi_source_digits import targets_table  # noqa: E402
from multi_source_tuning import load_choices  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "multi_source_office_caltech.md"
DEFAULT_ROOT = Path(
    os.environ.get("TLRUN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
) / "office_caltech10_surf"
#: tlrun's names of the four domains (``caltech`` is the file ``Caltech10_SURF_L10.mat``).
DOMAINS = ["amazon", "caltech", "dslr", "webcam"]
METHODS = ["m3sda", "mdan", "dann", "source_only"]


def missing_files(root: Path) -> list[Path]:
    """The SURF files of the four domains that ``root`` lacks (the file names tlrun's dataset reads)."""
    from tlrun.data.features import OFFICE_CALTECH10_RELEASES

    files, _, _ = OFFICE_CALTECH10_RELEASES["surf"]
    return [root / files[domain] for domain in DOMAINS if not (root / files[domain]).is_file()]


def rows(root: Path, target: str) -> dict[str, list[str]]:
    """One target's rows, name → overrides: each method with its defaults on the other three domains pooled, and
    ``dann`` with the digits tuning task's choice (when ``multi_source_tuning.json`` has one)."""
    sources = [domain for domain in DOMAINS if domain != target]
    data = ["dataset=office_caltech10", f"dataset.root={root}", "dataset.features=surf",
            f"dataset.source=[{','.join(sources)}]", f"dataset.target={target}"]
    table = {method: [f"method={method}", *data] for method in METHODS}
    setting = load_choices().get("dann")
    if setting:
        name = ", ".join(f"{key.split('.')[-1]} {value}" for key, value in setting.items())
        table[f"dann, digits tuning task's choice: {name}"] = [
            "method=dann", *data, *(f"{key}={value}" for key, value in setting.items())]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the folder of the four *_SURF_L10.mat files")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    root = args.root.expanduser().resolve()
    missing = missing_files(root)
    if missing:
        sys.exit(f"Office+Caltech10 SURF files not found: {', '.join(map(str, missing))}. Give the folder holding "
                 "amazon_SURF_L10.mat, Caltech10_SURF_L10.mat, dslr_SURF_L10.mat and webcam_SURF_L10.mat with --root.")

    cells = {(row, target): overrides for target in DOMAINS for row, overrides in rows(root, target).items()}
    scores, _, elapsed = run_rows({f"{row} | {target}": overrides for (row, target), overrides in cells.items()},
                                  args.seeds, args.jobs)
    methods = list(dict.fromkeys(row for row, _ in cells))
    command = "python benchmarks/multi_source_office_caltech.py" + (
        f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds != [0, 1, 2] else "")
    lines = [
        "# Multi-source DA on Office+Caltech10 SURF, each domain in turn the target of the other three",
        "",
        "Target accuracy (%), mean ± std over seeds " + ", ".join(map(str, args.seeds)) + " per cell. Data: the "
        "Office+Caltech10 SURF release (Gong et al., CVPR 2012; 800-d bag-of-words, 10 classes; amazon 958, caltech "
        "1123, dslr 157, webcam 295 samples), each domain preprocessed apart by the dataset's default `rowsum_zscore` "
        "(the JDA release's protocol, the shared data's README). Each column's target is adapted from the other "
        "three domains pooled (0.1 of them held out). Transductive protocol (every target sample is both unlabeled "
        "training data and test data), `trainer.select=last` (the last epoch's weights). Every setting is a default: "
        "each method's config as it stands (`backbone=auto`, which on feature rows is `identity`, so the network is "
        "the deep head alone: 800 → 256-unit bottleneck → linear classifier; 30 epochs, batch 32, SGD with inv "
        "annealing), except the last row, `dann` with the setting the grid search of "
        "[multi_source_tuning.md](multi_source_tuning.md) chose on its digits tuning task. No setting was chosen by "
        "looking at these tasks' target labels; this benchmark was added after "
        "the digits multi-source tables had been seen, and is reported whatever it shows. Made by "
        f"`{command}` in {elapsed / 60:.0f} min on {os.cpu_count()} shared cores ({args.jobs} runs side by side, one "
        "thread each).",
        "",
        *targets_table(scores, methods, DOMAINS, args.seeds),
    ]
    lines += ["", "Per seed (" + " / ".join(map(str, args.seeds)) + "):", "",
              "| method | " + " | ".join(f"→ {target}" for target in DOMAINS) + " |",
              "|---|" + "---|" * len(DOMAINS)]
    for row in methods:
        texts = [seed_cells(scores[f"{row} | {target}"], args.seeds).split(" | ")[1] for target in DOMAINS]
        lines.append(f"| {row} | " + " | ".join(texts) + " |")
    publish(lines, args.output)


if __name__ == "__main__":
    main()
