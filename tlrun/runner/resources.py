"""Peak-memory estimates of the closed-form methods whose memory grows faster than their data (TCA, JDA, KMM),
checked against the memory a run may use once the data is loaded, before its MLflow run opens; and the tags that
record a kernel approximated at that size.

The estimates count the float64 matrices each solver holds at its peak (see :mod:`tlrun.methods.subspace` and
:mod:`tlrun.methods.kmm`), not the interpreter or the data as read: they are meant to tell a run of 0.8 GB from one
of 320 GB, not to the last megabyte. Imports no torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tlrun.errors import TlrunError
from tlrun.methods.settings import KERNELS, KMM_KERNELS, MEDIAN_SAMPLE, approximates_kernel, class_chain

FLOAT64 = 8
#: The ``_target_`` whose subclasses are the MMD subspace methods (TCA, JDA), and KMM's.
MMD_SUBSPACE = "tlrun.methods.jda.MMDSubspaceMethod"
KMM = "tlrun.methods.kmm.KMM"
#: Dense ``n × n`` (or ``q × q``) matrices an MMD subspace solve holds at once: ``F``, ``Fᵀ H F``, its whitened
#: halves and the eigenvectors.
DENSE_SOLVE_MATRICES = 5
UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_memory(value: Any) -> int | None:
    """``resources.max_memory`` in bytes: ``auto`` (``None``: the machine's available memory), a number of bytes,
    or a size such as ``12GB``, ``1.5GiB``, ``512MB``. Raises :class:`TlrunError` otherwise."""
    if value == "auto":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*((?:[KMGT]I?)?B)\s*", str(value), flags=re.IGNORECASE)
    if not match or float(match[1]) <= 0:
        raise TlrunError(f"resources.max_memory={value}: must be auto, a number of bytes or a size such as 12GB, "
                         "1.5GiB or 512MB")
    return int(float(match[1]) * UNITS[match[2].upper()])


def available_memory() -> int:
    """The memory the machine can give a new process now: ``MemAvailable`` of ``/proc/meminfo``, else the free
    pages ``sysconf`` reports."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        found = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo.read_text(), flags=re.MULTILINE)
        if found:
            return int(found[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def size_text(n_bytes: float) -> str:
    """``n_bytes`` in the largest decimal unit that keeps a leading digit (``3.2 GB``)."""
    for unit in ("TB", "GB", "MB", "KB"):
        if n_bytes >= UNITS[unit]:
            return f"{n_bytes / UNITS[unit]:.1f} {unit}"
    return f"{int(n_bytes)} B"


def subspace_peak_bytes(kernel: str, approx: str, rank: int, n: int, d: int) -> int:
    """TCA/JDA on ``n`` samples (source + target) of ``d`` features: the data and its normalised float64 copy, the
    feature map ``F`` (``n × q``) with the temporaries that build it, and the dense ``q × q`` solve (``q``: ``d``,
    ``min(n, d)``, the landmarks, or ``n`` for the exact ``rbf`` kernel)."""
    if kernel == "primal":
        width, building = d, 0
    elif kernel == "linear":
        width, building = min(n, d), 0
    elif approximates_kernel(kernel, approx, n):
        width, building = min(rank, n), 0  # F by blocks of rows, Φ never held
    else:
        width, building = n, 2  # the squared distances beside K
    return FLOAT64 * (2 * n * d + (1 + building) * n * width + DENSE_SOLVE_MATRICES * width**2)


def kmm_peak_bytes(kernel: str, gamma: float | None, approx: str, rank: int, n_source: int, n_target: int,
                   d: int) -> int:
    """KMM: the data and its float64 copy, then what the kernel takes at its peak: nothing more for ``linear``
    (factored through the data); for Nyström, the median heuristic's distances between
    :data:`~tlrun.methods.settings.MEDIAN_SAMPLE` samples (``gamma=null``) or the features ``Φ_s``, ``Φ_t`` (made
    by blocks of rows); for the exact ``rbf``, the distances of all pairs and their upper triangle
    (``gamma=null``), or ``K_ss`` beside the largest of ``K_ss``, ``K_st``, ``K_tt`` and its distances."""
    n = n_source + n_target
    if kernel == "linear":
        return FLOAT64 * 2 * n * d
    if approximates_kernel(kernel, approx, n):
        median = 3 * min(n, MEDIAN_SAMPLE) ** 2 if gamma is None else 0
        return FLOAT64 * (2 * n * d + max(median, n * min(rank, n)))
    median = 3 * n**2 if gamma is None else 0
    blocks = n_source**2 + 2 * max(n_source**2, n_source * n_target, n_target**2)
    return FLOAT64 * (2 * n * d + max(median, blocks))


def estimate_peak_bytes(settings: Mapping[str, Any], n_source: int, n_target: int, d: int) -> int | None:
    """The peak memory of the method ``settings`` (its ``method`` node) on the given sizes; ``None`` for a method
    whose memory grows with its data alone."""
    chain = class_chain(str(settings.get("_target_", "")))
    if MMD_SUBSPACE in chain:
        return subspace_peak_bytes(str(settings["kernel"]), str(settings["approx"]), int(settings["rank"]),
                                   n_source + n_target, d)
    if KMM in chain:
        return kmm_peak_bytes(str(settings["kernel"]), settings.get("gamma"), str(settings["approx"]),
                              int(settings["rank"]), n_source, n_target, d)
    return None


def fitting_options(settings: Mapping[str, Any], n_source: int, n_target: int, d: int, limit: int) -> list[str]:
    """Overrides of the kernel methods (TCA, JDA, KMM) that bring the estimate under ``limit``: the most Nyström
    landmarks (halving the configured rank) for the ``rbf`` kernel, then the method's other exact kernels."""
    chain = class_chain(str(settings.get("_target_", "")))
    kernels = KERNELS if MMD_SUBSPACE in chain else KMM_KERNELS if KMM in chain else ()

    def fits(**changes: Any) -> bool:
        return estimate_peak_bytes({**settings, **changes}, n_source, n_target, d) <= limit

    options = []
    if settings.get("kernel") == "rbf":
        rank = int(settings["rank"])
        while rank >= 50 and not fits(approx="nystroem", rank=rank):
            rank //= 2
        if rank >= 50:
            options.append(f"method.approx=nystroem method.rank={rank}")
    return options + [f"method.kernel={kernel}" for kernel in kernels
                      if kernel not in (settings.get("kernel"), "rbf") and fits(kernel=kernel, approx="none")]


def approximation_tags(settings: Mapping[str, Any], n_source: int, n_target: int) -> dict[str, str]:
    """The run tags of a kernel method whose ``rbf`` kernel is approximated on these sizes: ``approx=nystroem``,
    ``approx.rank`` (the landmarks) and ``approx.chosen_by`` (``auto``, the size, or ``config``); none otherwise."""
    chain = class_chain(str(settings.get("_target_", "")))
    n = n_source + n_target
    if not (MMD_SUBSPACE in chain or KMM in chain) or not approximates_kernel(
            str(settings["kernel"]), str(settings["approx"]), n):
        return {}
    return {"approx": "nystroem", "approx.rank": str(min(int(settings["rank"]), n)),
            "approx.chosen_by": "auto" if settings["approx"] == "auto" else "config"}


def check_memory(cfg: Any, n_source: int, n_target: int, d: int) -> None:
    """Raise :class:`TlrunError`, in one line naming the estimate and the options that would fit, when the method's
    estimated peak memory exceeds ``resources.max_memory`` (``auto``: the machine's available memory; on a GPU
    trainer, where the matrices live in the GPU's memory, ``auto`` checks nothing)."""
    estimate = estimate_peak_bytes(cfg.method, n_source, n_target, d)
    configured = parse_memory(cfg.get("resources", {}).get("max_memory", "auto"))
    on_a_gpu = str(cfg.trainer.get("accelerator", "cpu")) == "gpu"
    if estimate is None or (configured is None and on_a_gpu):
        return
    limit = available_memory() if configured is None else configured
    if estimate <= limit:
        return
    where = "resources.max_memory" if configured is not None else "available on this machine"
    options = fitting_options(cfg.method, n_source, n_target, d, limit)
    gpu = [] if on_a_gpu else [f"trainer=gpu on a GPU with {size_text(estimate)} free"]
    raise TlrunError(
        f"method={cfg.method_info.name} on {n_source} + {n_target} samples of {d} features needs about "
        f"{size_text(estimate)} of memory, over the {size_text(limit)} {where}; what would fit: "
        f"{', '.join(options + gpu + ['resources.max_memory=<size> to allow more'])}"
    )


def loaded_sizes(loaded: Any) -> tuple[int, int, int] | None:
    """``(n_source, n_target, d)`` of a run's ``LoadedData`` (``None`` in ``zeroshot``, which has no pair); ``d``
    is the arrays' width, 0 for image files, whose features the backbone makes later."""
    if loaded.pair is None:
        return None
    source, target = loaded.pair
    return len(source), len(target), source.X.shape[1] if getattr(source.X, "ndim", 0) == 2 else 0


def check_loaded_memory(cfg: Any, loaded: Any) -> dict[str, str]:
    """:func:`check_memory` on the loaded source and target; returns their :func:`approximation_tags`."""
    sizes = loaded_sizes(loaded)
    if sizes is None:
        return {}
    check_memory(cfg, *sizes)
    return approximation_tags(cfg.method, *sizes[:2])
