"""The fine-tuning family's learning curve on the embedded digits shift: target accuracy vs. target labels per class.

Run by hand from the repository root with the project's venv:

    python benchmarks/finetune_curve.py                            # labels 1 5 10 50, seeds 0 1 2, every variant
    python benchmarks/finetune_curve.py --labels 1 5 --seeds 0 --variants target_only "finetune (all layers)"
    python benchmarks/finetune_curve.py --target rotate --output benchmarks/results/finetune_curve_rotate.md

Every cell is a full tlrun run (composed in-process; scenario finetune, original → thick unless ``--target``, the method's default
config with the LeNet backbone; diagnostics off). The fine-tuning methods pre-train on the labeled source inside
the run (their default when no weights are given). The seed changes the labeled target sample, the initialisation
and the batches. Writes benchmarks/results/finetune_curve.md (mean ± std per variant and label count) and
finetune_curve.png, and logs both to MLflow as the artifacts of one run named "finetune learning curve" in the
experiment bench-finetune-curve of the chosen store (default: ./outputs/mlflow.db, like tlrun's runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from tlrun.config import config_dir, methods, register_resolvers
from tlrun.run import run
from tlrun.tracking import TrackedRun, resolve_tracking_uri

#: The settings variants of a method, each a row ``<method> (<variant>)``; a method not here is one row, its defaults.
SETTING_VARIANTS: dict[str, dict[str, list[str]]] = {
    "finetune": {
        "all layers": [],
        "all_but_head": ["method.freeze=all_but_head"],
        "first_k=1": ["method.freeze=first_k", "method.freeze_k=1"],
        "last_k=1": ["method.freeze=last_k", "method.freeze_last_k=1"],
        "gradual, 5 epochs": ["method.unfreeze_every=5"],
        "layer_decay 0.3": ["method.layer_decay=0.3", "method.backbone_lr_mult=1.0"],
    },
}
RESULTS = Path(__file__).resolve().parent / "results"


def variants() -> dict[str, list[str]]:
    """Variant name → the overrides that make it: every deep method whose config serves ``finetune`` (a new method
    config joins the curve), the baseline first, with its defaults or its :data:`SETTING_VARIANTS`."""
    rows = {}
    for method in methods(family="deep", scenario="finetune"):
        for variant, overrides in SETTING_VARIANTS.get(method, {"": []}).items():
            rows[f"{method} ({variant})" if variant else method] = [f"method={method}", *overrides]
    return rows


def curve_figure(labels: list[int], scores: dict[str, dict[int, list[float]]], target: str):
    """Mean target accuracy vs. labels per class (log axis), one line per variant, ±1 std as error bars."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5.5), layout="constrained")
    axes = figure.add_subplot()
    for name, per_label in scores.items():
        means = [statistics.mean(per_label[n]) for n in labels]
        spreads = [statistics.stdev(per_label[n]) if len(per_label[n]) > 1 else 0.0 for n in labels]
        style = {"linewidth": 2.5, "color": "black"} if name == "target_only" else {"linewidth": 1.2}
        axes.errorbar(labels, means, yerr=spreads, marker="o", markersize=4, capsize=3, label=name, **style)
    axes.set_xscale("log")
    axes.set_xticks(labels, [str(n) for n in labels])
    axes.set_xlabel("labeled target samples per class")
    axes.set_ylabel("target accuracy (%)")
    axes.set_title(f"Fine-tuning on digits original → {target} (LeNet; mean ± std over seeds)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", nargs="+", type=int, default=[1, 5, 10, 50])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--target", default="thick", help="the target domain of dataset=digits")
    rows = variants()
    parser.add_argument("--variants", nargs="+", default=list(rows), choices=list(rows), metavar="VARIANT")
    parser.add_argument("--output", type=Path, default=RESULTS / "finetune_curve.md")
    parser.add_argument("--tracking-uri", default=resolve_tracking_uri())
    args = parser.parse_args()

    register_resolvers()
    scores: dict[str, dict[int, list[float]]] = {}
    started = time.perf_counter()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for name in args.variants:
            scores[name] = {}
            for labels in args.labels:
                scores[name][labels] = [
                    100 * run(compose("config", overrides=rows[name] + [
                        "scenario=finetune", f"dataset.target={args.target}",
                        f"scenario.target_labels_per_class={labels}", f"seed={seed}",
                        f"logger.tracking_uri={args.tracking_uri}", "logger.experiment=bench-finetune-curve",
                        "trainer.enable_progress_bar=false", "diagnostics=false", "save_model=false",
                    ]))
                    for seed in args.seeds
                ]
                print(f"{name} @ {labels}/class: {scores[name][labels]}", flush=True)
    elapsed = time.perf_counter() - started

    lines = [
        f"# Fine-tuning learning curve on the embedded digits (original → {args.target})",
        "",
        f"Target accuracy (%) on the unlabeled rest of the target, mean ± std over seeds {', '.join(map(str, args.seeds))}, "
        "by labeled target samples per class. LeNet backbone, each method's default config (Adam 1e-3, 20 epochs × 20 "
        "steps; fine-tuning methods pre-train 10 epochs on the labeled source first). "
        f"Made by `python benchmarks/finetune_curve.py` in {elapsed / 60:.0f} min on {os.cpu_count()} cores.",
        "",
        "| variant | " + " | ".join(f"{n}/class" for n in args.labels) + " |",
        "|---|" + "---|" * len(args.labels),
    ]
    for name, per_label in scores.items():
        cells = []
        for n in args.labels:
            values = per_label[n]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "target_only" in scores:
        lines += ["", "Fine-tuning from the source vs. target_only (difference of the means, points):", ""]
        for name, per_label in scores.items():
            if name == "target_only":
                continue
            gains = [statistics.mean(per_label[n]) - statistics.mean(scores["target_only"][n]) for n in args.labels]
            lines.append(f"- {name}: " + ", ".join(f"{n}/class {gain:+.1f}" for n, gain in zip(args.labels, gains)))
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    figure = curve_figure(args.labels, scores, args.target)
    plot = args.output.with_suffix(".png")
    figure.savefig(plot, dpi=120)
    with TrackedRun("bench-finetune-curve", tracking_uri=args.tracking_uri, run_name="finetune learning curve",
                    tags={"benchmark": "finetune_curve"}) as tracked:
        tracked.log_params({"labels": " ".join(map(str, args.labels)), "seeds": " ".join(map(str, args.seeds))})
        tracked.log_figure(figure, "finetune_curve.png")
        tracked.log_artifact(args.output)
    print(text)
    print(f"plot: {plot}; MLflow run {tracked.run_id} in {args.tracking_uri}")


if __name__ == "__main__":
    main()
