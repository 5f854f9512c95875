"""The peak-memory estimates of TCA, JDA and KMM (tlrun.runner.resources), and a run refused for its size."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from tlrun.config import option_node
from tlrun.errors import TlrunError
from tlrun.runner import resources
from tlrun.runner.resources import check_memory, estimate_peak_bytes, parse_memory

GIB = 2**30


def config(method: str, **overrides) -> OmegaConf:
    node = option_node("method", method)
    node.update(overrides)
    return OmegaConf.create({"method": node, "method_info": {"name": method}, "trainer": {"accelerator": "cpu"},
                             "resources": {"max_memory": "12GiB"}})


@pytest.mark.parametrize("value, expected", [("auto", None), ("12GB", 12 * 10**9), ("1.5GiB", int(1.5 * GIB)),
                                             ("512 mb", 512 * 10**6), (4096, 4096)])
def test_max_memory_is_auto_bytes_or_a_size(value, expected):
    assert parse_memory(value) == expected


@pytest.mark.parametrize("value", ["lots", "-1GB", "12 parsecs", "3IB", 0, True])
def test_a_bad_max_memory_is_an_error_naming_the_forms(value):
    with pytest.raises(TlrunError, match="resources.max_memory=.*auto, a number of bytes or a size"):
        parse_memory(value)


def test_the_exact_rbf_kernel_at_100k_per_domain_is_refused_naming_what_fits():
    cfg = config("tca", kernel="rbf", approx="none")
    assert estimate_peak_bytes(cfg.method, 100_000, 100_000, 2048) > 1000 * GIB  # 200,000² float64 is 320 GB each
    with pytest.raises(TlrunError) as refused:
        check_memory(cfg, 100_000, 100_000, 2048)
    message = str(refused.value)
    assert "\n" not in message and "over the 12.9 GB resources.max_memory" in message
    # the data, its normalised copy and the linear kernel's n × min(n, d) map: 10.0 GB, fits; so does the primal form
    assert "method.approx=nystroem method.rank=1000, method.kernel=primal, method.kernel=linear, trainer=gpu" in message


def test_the_rbf_kernel_fits_at_100k_per_domain_by_default_and_a_fitting_rank_is_found():
    for method in ("tca", "jda"):
        check_memory(config(method, kernel="rbf"), 100_000, 100_000, 2048)  # auto: Nyström above 10,000 samples
    tight = config("jda", kernel="rbf", approx="none")
    tight.resources.max_memory = "8GB"
    with pytest.raises(TlrunError, match="method.approx=nystroem method.rank=500, trainer=gpu"):
        check_memory(tight, 100_000, 100_000, 2048)


def test_kmm_fits_at_100k_per_domain_by_default_its_exact_kernel_does_not_and_other_methods_are_not_estimated():
    check_memory(config("kmm"), 100_000, 100_000, 2048)  # auto: Nyström above 10,000 samples, the median sampled
    exact = config("kmm", approx="none")
    assert estimate_peak_bytes(exact.method, 100_000, 100_000, 2048) >= 3 * 8 * 200_000**2  # the median's distances
    with pytest.raises(TlrunError, match="method.approx=nystroem method.rank=1000, method.kernel=linear, trainer=gpu"):
        check_memory(exact, 100_000, 100_000, 2048)
    assert estimate_peak_bytes(config("coral").method, 100_000, 100_000, 2048) is None


@pytest.mark.parametrize("method, settings, n, tags", [
    ("tca", {"kernel": "rbf"}, 10_001, {"approx": "nystroem", "approx.rank": "1000", "approx.chosen_by": "auto"}),
    ("tca", {"kernel": "rbf"}, 10_000, {}),
    ("jda", {"kernel": "rbf", "approx": "nystroem", "rank": 5000}, 3000,
     {"approx": "nystroem", "approx.rank": "3000", "approx.chosen_by": "config"}),
    ("jda", {"approx": "nystroem"}, 3000, {}),  # the linear kernel is exact at linear cost: nothing approximated
    ("kmm", {}, 20_000, {"approx": "nystroem", "approx.rank": "1000", "approx.chosen_by": "auto"}),
    ("coral", {}, 20_000, {}),
])
def test_an_approximated_kernel_is_tagged(method, settings, n, tags):
    assert resources.approximation_tags(config(method, **settings).method, n - n // 2, n // 2) == tags


def test_auto_compares_with_the_memory_available_now(monkeypatch):
    monkeypatch.setattr(resources, "available_memory", lambda: 10**6)
    cfg = config("tca", kernel="rbf", approx="none")
    cfg.resources.max_memory = "auto"
    with pytest.raises(TlrunError, match="over the 1.0 MB available on this machine"):
        check_memory(cfg, 1000, 1000, 10)
    cfg.trainer.accelerator = "gpu"  # the GPU's memory, which the host's does not measure
    check_memory(cfg, 1000, 1000, 10)


def test_a_run_over_max_memory_stops_before_any_mlflow_run(tmp_path):
    store = tmp_path / "store" / "mlflow.db"
    result = subprocess.run(
        [sys.executable, "-m", "tlrun.cli", "method=tca", "method.kernel=rbf", "method.approx=none",
         "resources.max_memory=1MB", f"logger.tracking_uri=sqlite:///{store}", f"hydra.run.dir={tmp_path / 'run'}",
         "threads=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and last.startswith("tlrun: error: method=tca on ")
    assert "over the 1.0 MB resources.max_memory" in last
    if store.exists():
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{store}")
        assert not [run for experiment in client.search_experiments()
                    for run in client.search_runs([experiment.experiment_id])]


def test_max_memory_does_not_change_a_run_s_identity(compose):
    """A relaunched sweep skips its finished jobs whatever memory it is allowed."""
    from tlrun.tracking.sweeps import config_hash

    assert config_hash(compose("method=tca", "resources.max_memory=1GB")) == config_hash(compose("method=tca"))
