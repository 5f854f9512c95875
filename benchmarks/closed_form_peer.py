"""Closed-form methods with their defaults on a two-class bag-of-words shift, and tlrun's CORAL against skada's.

Run by hand from the repository root with the project's venv, skada importable (it is not a tlrun dependency):

    pip install --no-deps --target /tmp/skada skada pot
    PYTHONPATH=/tmp/skada python benchmarks/closed_form_peer.py

Data: Office+Caltech10 SURF (``../shared/data/office_caltech10_surf``, see its README), made two-class (classes
0–4 against 5–9) and read as features in [0, 1], like text features: ``presence`` (1 where a visual word occurs)
and ``frequency`` (counts divided by the row's total). 12 tasks (every ordered pair of the 4 domains) per view.

Part 1 runs ``tlrun dataset=features`` with each method's default config (a full tlrun run per task, in a temporary
MLflow store): no_adaptation, tca, jda, coral (1-NN, the papers' classifier). Part 2 compares
``method=coral method.classifier=logreg`` with skada's ``CORAL(LogisticRegression(C=1, max_iter=1000))`` on the same
features. No setting was chosen on these tasks: the results only check the defaults. Writes
benchmarks/results/closed_form_peer.md and prints it.
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.io
from hydra import compose, initialize_config_dir

from tlrun.config import config_dir, register_resolvers
from tlrun.run import run

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "office_caltech10_surf"
DOMAINS = {"amazon": "A", "Caltech10": "C", "dslr": "D", "webcam": "W"}
VIEWS = ("presence", "frequency")
METHODS = ("no_adaptation", "tca", "jda", "coral")
RESULTS = Path(__file__).resolve().parent / "results" / "closed_form_peer.md"


def two_class_views(folder: Path) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``{view: {domain: (X, y)}}`` with y = 1 for the classes 5..9 (1-based labels 6..10)."""
    views: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {view: {} for view in VIEWS}
    for domain in DOMAINS:
        variables = scipy.io.loadmat(DATA / f"{domain}_SURF_L10.mat")
        counts = variables["fts"].astype(np.float64)
        labels = (variables["labels"].ravel() >= 6).astype(np.int64)
        views["presence"][domain] = ((counts > 0).astype(np.float64), labels)
        views["frequency"][domain] = (counts / counts.sum(axis=1, keepdims=True), labels)
    for view, domains in views.items():
        (folder / view).mkdir()
        for domain, (X, y) in domains.items():
            np.savez(folder / view / f"{domain}.npz", X=X, y=y)
    return views


def skada_coral_logreg(source: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray]) -> float:
    from sklearn.linear_model import LogisticRegression
    from skada import CORAL

    (Xs, ys), (Xt, yt) = source, target
    X = np.vstack([Xs, Xt])
    y = np.concatenate([ys, -np.ones(len(Xt), dtype=np.int64)])
    domain = np.concatenate([np.ones(len(Xs), dtype=np.int64), -np.ones(len(Xt), dtype=np.int64)])
    pipeline = CORAL(LogisticRegression(C=1.0, max_iter=1000, random_state=0)).fit(X, y, sample_domain=domain)
    return 100 * float(np.mean(pipeline.predict(Xt, sample_domain=-np.ones(len(Xt), dtype=np.int64)) == yt))


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"{DATA} is missing: this benchmark needs the Office+Caltech10 SURF release (see its README)")
    register_resolvers()
    started = time.perf_counter()
    tasks = list(itertools.permutations(DOMAINS, 2))
    accuracy: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder, initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        views = two_class_views(Path(folder))

        def tlrun_accuracy(view: str, method: list[str], source: str, target: str) -> float:
            return 100 * run(compose("config", overrides=[
                *method, "dataset=features", f"dataset.root={Path(folder) / view}", f"dataset.source={source}",
                f"dataset.target={target}", f"cache_dir={folder}", "logger.experiment=bench-peer",
            ]))

        for view in VIEWS:
            for method in METHODS:
                accuracy[view, method] = [tlrun_accuracy(view, [f"method={method}"], s, t) for s, t in tasks]
            accuracy[view, "coral (logreg)"] = [
                tlrun_accuracy(view, ["method=coral", "method.classifier=logreg"], s, t) for s, t in tasks]
            accuracy[view, "skada CORAL (logreg)"] = [
                skada_coral_logreg(views[view][s], views[view][t]) for s, t in tasks]
    import skada

    rows = (*METHODS, "coral (logreg)", "skada CORAL (logreg)")
    names = [f"{DOMAINS[s]}→{DOMAINS[t]}" for s, t in tasks]
    lines = [
        "# Closed-form defaults on a two-class bag-of-words shift; tlrun's CORAL against skada's",
        "",
        "Office+Caltech10 SURF made two-class (classes 0–4 against 5–9), features in [0, 1]: `presence` (1 where a "
        "visual word occurs) and `frequency` (counts over the row's total). Transductive protocol: every target "
        "sample, unlabeled at training, scores the run (`target_acc`). Each tlrun cell is a full run, "
        "`tlrun method=<m> dataset=features` with every default (1-NN for the first four rows); the last two rows use "
        "logistic regression (C = 1) on the same features, through tlrun (`method.classifier=logreg`) and through "
        f"skada {skada.__version__} (`skada.CORAL`, its defaults). **Nothing was tuned on these tasks**: they check "
        "defaults chosen by the rules in `docs/defaults.md`.",
        f"Made by `python benchmarks/closed_form_peer.py` in {time.perf_counter() - started:.0f} s on "
        f"{os.cpu_count()} cores.",
    ]
    for view in VIEWS:
        baseline = statistics.mean(accuracy[view, "no_adaptation"])
        lines += ["", f"## {view}", "", "| method | " + " | ".join(names) + " | avg | vs no_adaptation |",
                  "|---" * (len(names) + 3) + "|"]
        for row in rows:
            scores = accuracy[view, row]
            gain = f"{statistics.mean(scores) - baseline:+.1f}" if row in METHODS[1:] else ""
            lines.append(f"| {row} | " + " | ".join(f"{score:.1f}" for score in scores)
                         + f" | {statistics.mean(scores):.1f} | {gain} |")
        difference = np.subtract(accuracy[view, "coral (logreg)"], accuracy[view, "skada CORAL (logreg)"])
        lines += ["", f"tlrun − skada, CORAL with logistic regression: mean {difference.mean():+.2f} points, largest "
                  f"|difference| on one task {np.abs(difference).max():.2f}."]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
