"""Self-taught learning on the embedded digits: does a representation learned on unlabeled digits beat raw pixels
when only a few target digits are labeled?

Run by hand from the repository root with the project's venv:

    python benchmarks/selftaught_digits.py                     # labels 1 5 10, seeds 0 1 2, targets original thick
    python benchmarks/selftaught_digits.py --labels 1 --seeds 0 --targets thick --encoders none sparse_coding

The unlabeled source is the source half of the digits (domain ``original``) without its labels; the target is the
other half, under ``original`` (no shift) and ``thick`` (strokes dilated by a 2 × 2 window: the unlabeled digits
are thinner than the target's). The seed draws the labeled target samples (``k`` per class from
``numpy.random.default_rng(seed)``, the draw of ``scenario=selftaught``) and seeds the encoder; accuracy is measured
on the rest of the target. Every cell calls :class:`tlrun.methods.selftaught.SelfTaught` directly, each encoder
with its default options and the default classifier (linear SVM, C = 1), plus the same with 1-NN; torch on one
thread. A last table clusters the whole target with :class:`tlrun.methods.kmeans.KMeansClustering` (clustering
accuracy after matching clusters to classes). Writes benchmarks/results/selftaught_digits.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tlrun.data.digits import Digits
from tlrun.methods.base import NullReporter, RunContext
from tlrun.methods.components.representations import ENCODERS, make_encoder
from tlrun.methods.kmeans import KMeansClustering
from tlrun.methods.selftaught import SelfTaught
from tlrun.metrics import clustering_scores
from tlrun.scenarios import Labeled, TrainingData, Unlabeled

RESULTS = Path(__file__).resolve().parent / "results"
#: How the encoders' defaults came about (the tuning used these digits, so it is told with the numbers).
NOTES = (
    "On these same digits (targets original and thick, labeled draws of seeds 0–7, linear SVM and 1-NN). Sparse "
    "codes of whole images (64–256 bases, several β, signed or non-negative) were at best on a par with raw pixels "
    "at one label per class (the best, 64 signed bases: 66.6 % against 66.2 % with the SVM on `original`; most "
    "settings 48–63 %) and lost with 1-NN; the L1 codes of a whole digit seem to jump with small changes of its "
    "strokes. Codes of 3 × 3 patches summed over regions won everywhere; pooling over a 3 × 3 grid rather than "
    "2 × 2 turned a tie on `thick` at one label per class (63.0 vs 62.3 %, seeds 0–4) into a win, and β between "
    "0.3 and 0.6 × the RMS value moved the means by about a point. "
    "`benchmarks/results/selftaught_digits_heldout.md` repeats the comparison on seeds 5–9. That is NOT a held-out "
    "check: seeds 5–7 were among the tuning's draws, and a seed only redraws the labeled digits (and the encoder's "
    "initialisation), on the same source and target images and the same shifts the tuning watched; a held-out check "
    "needs a task the tuning never saw. The autoencoder codes whole images: on `original` it is on a par with raw pixels, and the thin-stroke "
    "digits it learns from do not prepare it for thick strokes (relative reconstruction error about 0.8 on `thick` "
    "against 0.2 on `original`), where its codes lose 15–28 points; patches of strokes, which thin and thick digits "
    "share, carry over, whole images do not. None of the five autoencoder settings tried on `thick` (sigmoid or "
    "ReLU, with or without masking noise and L1) beat raw pixels there."
)
ENCODER_TITLES = {"none": "raw pixels (encoder=none)", "pca": "pca (30-d)", "sparse_coding": "sparse_coding",
                  "autoencoder": "autoencoder"}


class FitTimes(NullReporter):
    """Keeps the ``encoder_fit_s`` the methods log."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if "encoder_fit_s" in metrics:
            self.seconds.append(metrics["encoder_fit_s"])


def labeled_draw(y: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` labeled indices of every class (the draw of ``scenario=selftaught``), and the rest."""
    rng = np.random.default_rng(seed)
    labeled = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == label))[:per_class] for label in np.unique(y)]))
    return labeled, np.setdiff1d(np.arange(len(y)), labeled)


def cell(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", nargs="+", type=int, default=[1, 5, 10])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--targets", nargs="+", default=["original", "thick"])
    parser.add_argument("--encoders", nargs="+", default=["none", "sparse_coding", "autoencoder", "pca"], choices=ENCODERS)
    parser.add_argument("--classifiers", nargs="+", default=["linear_svm", "1nn"])
    parser.add_argument("--output", type=Path, default=RESULTS / "selftaught_digits.md")
    parser.add_argument("--no-clustering", action="store_true", help="skip the k-means table")
    args = parser.parse_args()
    torch.set_num_threads(1)

    digits = Digits()
    source_domain = digits.load("original", half="source")
    source, source_shape = Unlabeled(source_domain.X), source_domain.image_shape
    targets = {domain: digits.load(domain, half="target") for domain in args.targets}
    # scores[classifier][target][encoder][labels] = accuracies (%) over the seeds
    scores: dict[str, dict[str, dict[str, dict[int, list[float]]]]] = {}
    fit_times: dict[str, FitTimes] = {encoder: FitTimes() for encoder in args.encoders}
    started = time.perf_counter()
    for classifier in args.classifiers:
        for domain, target in targets.items():
            for encoder in args.encoders:
                for labels in args.labels:
                    accuracies = []
                    for seed in args.seeds:
                        labeled, test = labeled_draw(target.y, labels, seed)
                        data = TrainingData(source, Labeled(target.X[labeled], target.y[labeled]), 10, target.classes,
                                            image_shape=target.image_shape)
                        method = SelfTaught(encoder=encoder, classifier=classifier)
                        method.fit(data, RunContext(reporter=fit_times[encoder], seed=seed))
                        accuracies.append(100 * float(np.mean(method.predict(target.X[test]) == target.y[test])))
                    scores.setdefault(classifier, {}).setdefault(domain, {}).setdefault(encoder, {})[labels] = accuracies
                    print(f"{classifier} {domain} {encoder} @ {labels}/class: {cell(accuracies)}", flush=True)

    clustering: dict[str, dict[str, list[dict[str, float]]]] = {}
    for domain, target in ({} if args.no_clustering else targets).items():
        for encoder in args.encoders:
            data = TrainingData(source, Unlabeled(target.X), 10, target.classes, image_shape=target.image_shape)
            runs = []
            for seed in args.seeds:
                method = KMeansClustering(representation=encoder)
                method.fit(data, RunContext(reporter=NullReporter(), seed=seed))
                runs.append(clustering_scores(target.y, method.predict(target.X)))
            clustering.setdefault(domain, {})[encoder] = runs
            print(f"kmeans {domain} {encoder}: acc {cell([100 * run['target_acc'] for run in runs])}", flush=True)
    elapsed = time.perf_counter() - started

    timings = {}  # encoder -> (one fit on the unlabeled digits, one encoding of the first target), seconds
    for encoder in args.encoders:
        clock = time.perf_counter()
        fitted = make_encoder(encoder, seed=0, image_shape=source_shape).fit(source.X)
        fitted_at = time.perf_counter()
        fitted.transform(next(iter(targets.values())).X)
        timings[encoder] = (fitted_at - clock, time.perf_counter() - fitted_at)

    seeds = ", ".join(map(str, args.seeds))
    lines = [
        "# Self-taught learning on the embedded digits",
        "",
        "Unlabeled source: the source half of the digits (domain `original`, 898 images, labels never read). Target: "
        "the other half (899 images) under `original` (no shift) or `thick` (strokes dilated 2 × 2, thicker than "
        f"the unlabeled digits'). The seed ({seeds}) draws k labeled target digits per class and seeds the encoder; "
        "accuracy (%) on the remaining target digits, mean ± std over the seeds. `SelfTaught` with each encoder's "
        "default options (`conf/method/selftaught.yaml`): sparse coding of every 3 × 3 patch on 32 bases learned from "
        "the unlabeled patches (non-negative codes, β = 0.45 × the RMS pixel value), sum-pooled over a 3 × 3 grid "
        "(288 features); a denoising sparse ReLU autoencoder (128 codes); PCA (30 components). "
        f"Made by `{' '.join(['python', 'benchmarks/selftaught_digits.py', *sys.argv[1:]])}` in {elapsed / 60:.1f} min "
        f"on {os.cpu_count()} cores "
        "(torch on one thread, the machine shared with other jobs).",
    ]
    for classifier, per_domain in scores.items():
        default = " (the default classifier)" if classifier == "linear_svm" else ""
        lines += ["", f"## Classifier `{classifier}`{default}", ""]
        lines += ["| target | features | " + " | ".join(f"{n}/class" for n in args.labels) + " |",
                  "|---|---|" + "---|" * len(args.labels)]
        for domain, per_encoder in per_domain.items():
            for encoder, per_label in per_encoder.items():
                row = " | ".join(cell(per_label[n]) for n in args.labels)
                lines.append(f"| {domain} | {ENCODER_TITLES[encoder]} | {row} |")
        if "none" in next(iter(per_domain.values())):
            lines += ["", "Gain over raw pixels on the same labeled draws (points): mean ± std of the per-seed "
                      "differences, and the seeds where the encoder wins:", ""]
            for domain, per_encoder in per_domain.items():
                for encoder, per_label in per_encoder.items():
                    if encoder != "none":
                        gains = {n: [coded - raw for coded, raw in zip(per_label[n], per_encoder["none"][n])]
                                 for n in args.labels}
                        lines.append(f"- {domain}, {encoder}: " + ", ".join(
                            f"{n}/class {statistics.mean(g):+.1f} ± {statistics.stdev(g) if len(g) > 1 else 0.0:.1f} "
                            f"({sum(x > 0 for x in g)}/{len(g)})" for n, g in gains.items()))
    lines += ["", "## Time", "",
              "Learning each representation on the 898 unlabeled digits (one fit, seed 0, and the median over the "
              f"{len(next(iter(fit_times.values())).seconds)} fits above), and encoding the 899 target digits once.", "",
              "| encoder | one fit (s) | median fit (s) | encoding 899 digits (s) |", "|---|---|---|---|"]
    for encoder, times in fit_times.items():
        fit_once, encode_once = timings[encoder]
        lines.append(f"| {encoder} | {fit_once:.2f} | {statistics.median(times.seconds):.2f} | {encode_once:.2f} |")
    if clustering:
        lines += ["", "## k-means baselines (`selftaught_clustering`)", "",
                  "k-means (10 restarts, seeded) on the whole target, raw or in the representation learned from the "
                  "unlabeled source (`KMeansClustering`, each encoder's defaults); clustering accuracy after the best "
                  "one-to-one matching of clusters to classes and NMI, mean ± std over the seeds.", "",
                  "| target | representation | accuracy (%) | NMI (%) |", "|---|---|---|---|"]
    for domain, per_encoder in clustering.items():
        for encoder, runs in per_encoder.items():
            lines.append(f"| {domain} | {ENCODER_TITLES[encoder]} | {cell([100 * run['target_acc'] for run in runs])} | "
                         f"{cell([100 * run['nmi'] for run in runs])} |")
    lines += ["", "## How the defaults were chosen", "", NOTES]
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
