"""Zero-shot learning on the embedded digits: the unseen digits recognised from their 5 × 3 glyph attributes.

Run by hand from the repository root with the project's venv:

    python benchmarks/zeroshot_digits.py                       # every method, seeds 0 1 2, plus the split survey
    python benchmarks/zeroshot_digits.py --methods eszsl --seeds 0

Every cell is a full tlrun run (composed in-process; scenario zeroshot, dataset digits with its default unseen
digits 0, 2, 6, 7; each method's default config; diagnostics off). The seed changes the held-out source split,
the initialisation and the batches. Reports the ZSL mean per-class accuracy on the unseen digits (target_acc;
chance 25 %) and GZSL's seen / unseen accuracy and H. Then, because the choice of unseen digits matters, ESZSL
(closed form, seconds per split) is run on every one of the 210 ways to hold out 4 digits. Writes
benchmarks/results/zeroshot_digits.md and logs it to MLflow (experiment bench-zeroshot-digits).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from tlrun.config import config_dir, register_resolvers
from tlrun.run import run
from tlrun.tracking import TrackedRun, default_tracking_uri

#: Method row → the overrides that make it.
METHODS: dict[str, list[str]] = {
    "eszsl": ["method=eszsl"],
    "zsl_attribute": ["method=zsl_attribute"],
    "zsl_attribute (learned g)": ["method=zsl_attribute", "method.learn_label_embedding=true"],
    "devise (sentence embeddings of the names)": ["method=devise", "method.label_template='the digit {name}'"],
}
METRICS = ("target_acc", "gzsl_seen_acc", "gzsl_unseen_acc", "gzsl_h")
RESULTS = Path(__file__).resolve().parent / "results"


def last_run_metrics(tracking_uri: str, experiment: str) -> dict[str, float]:
    """The final metrics of the most recent run of ``experiment``."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    run_info = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                                  order_by=["attributes.start_time DESC"], max_results=1)[0]
    return run_info.data.metrics


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
        results.append((unseen, mean_per_class_accuracy(evaluation.target_test.y, predictions)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD")
    parser.add_argument("--output", type=Path, default=RESULTS / "zeroshot_digits.md")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri())
    args = parser.parse_args()

    experiment = "bench-zeroshot-digits"
    register_resolvers()
    scores: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for name in args.methods:
            scores[name] = {metric: [] for metric in METRICS}
            for seed in args.seeds:
                run(compose("config", overrides=METHODS[name] + [
                    "scenario=zeroshot", f"seed={seed}", f"logger.tracking_uri={args.tracking_uri}",
                    f"logger.experiment={experiment}", "trainer.enable_progress_bar=false", "diagnostics=false",
                    "save_model=false",
                ]))
                metrics = last_run_metrics(args.tracking_uri, experiment)
                for metric in METRICS:
                    scores[name][metric].append(100 * metrics[metric])
            print(name, {metric: [round(v, 1) for v in values] for metric, values in scores[name].items()}, flush=True)
    survey = survey_splits()
    elapsed = time.perf_counter() - started

    def cell(values: list[float]) -> str:
        return f"{statistics.mean(values):.1f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.1f}"

    accuracies = np.array([accuracy for _, accuracy in survey]) * 100
    ranked = sorted(survey, key=lambda item: -item[1])
    default_rank = 1 + [unseen for unseen, _ in ranked].index((0, 2, 6, 7))
    lines = [
        "# Zero-shot learning on the embedded digits (unseen digits 0, 2, 6, 7)",
        "",
        "Seen digits 1, 3, 4, 5, 8, 9 of the source half train; the other half tests (no domain shift). The classes are "
        "linked only by each digit's glyph on a 5 × 3 grid (`tlrun/data/digits.py`). ZSL: mean per-class accuracy among "
        "the 4 unseen digits (chance 25 %); GZSL: all 10 digits compete, no calibration (`method.calibration=0`), H = "
        f"harmonic mean. Mean ± std over seeds {', '.join(map(str, args.seeds))}, each method's default config. Made by "
        f"`python benchmarks/zeroshot_digits.py` in {elapsed / 60:.0f} min on {os.cpu_count()} cores.",
        "",
        "| method | ZSL acc (target_acc) | GZSL seen | GZSL unseen | GZSL H |",
        "|---|---|---|---|---|",
    ]
    for name, per_metric in scores.items():
        lines.append(f"| {name} | " + " | ".join(cell(per_metric[metric]) for metric in METRICS) + " |")
    lines += [
        "",
        "## How much the choice of unseen digits matters (ESZSL, seed 0, all 210 choices of 4 unseen digits)",
        "",
        f"ZSL accuracy: mean {accuracies.mean():.1f} %, median {np.median(accuracies):.1f} %, min {accuracies.min():.1f} %, "
        f"max {accuracies.max():.1f} %; {np.mean(accuracies >= 50):.0%} of the splits reach 50 %. The default split "
        f"(0, 2, 6, 7) ranks {default_rank} of 210: it was chosen with the test labels, as the split where ESZSL "
        "scored best (a criterion that reads only the glyphs, how much of the unseen glyphs the seen ones span, ranks "
        "it 38th and does not predict accuracy), so read the default's numbers as what attribute transfer can do on "
        "these 8 × 8 images at best, not as a typical split. Best five: "
        + ", ".join(f"{unseen} {100 * accuracy:.1f} %" for unseen, accuracy in ranked[:5])
        + "; worst five: " + ", ".join(f"{unseen} {100 * accuracy:.1f} %" for unseen, accuracy in ranked[-5:]) + ".",
    ]
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    with TrackedRun(experiment, tracking_uri=args.tracking_uri, run_name="zero-shot digits", tags={"benchmark": "zeroshot_digits"}) as tracked:
        tracked.log_artifact(args.output)
    print(text)


if __name__ == "__main__":
    main()
