"""Domain generalisation (``scenario=dg``): the split withholds the test domain by construction, leave-one-domain-out
and oracle selection carve what DomainBed says, and the DA methods align the source domains with each other."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tlrun.config import other_domains
from tlrun.data.base import Domain, pool_domains
from tlrun.losses import (DomainDiscriminator, GradientReversal, coral_moments_loss, mean_over_pairs,
                          multi_domain_adversarial_loss)
from tlrun.scenarios import ScenarioError, check_generalisation, split
from tlrun.tracking.compare.table import comparison_table, task_of

#: Every feature of every test-domain sample: a value no source sample holds, so that any array holding it came from
#: the test domain.
SENTINEL = 1e6


def _domain(name: str, n: int, offset: float = 0.0, d: int = 3) -> Domain:
    rng = np.random.default_rng(len(name))
    return Domain(name, rng.normal(offset, 1.0, (n, d)).astype(np.float32), np.arange(n) % 2, ("a", "b"))


def _sources() -> Domain:
    return pool_domains([_domain("first", 40), _domain("second", 20, offset=10.0), _domain("third", 20, offset=20.0)])


def _sentinel_target(n: int = 12) -> Domain:
    return Domain("target", np.full((n, 3), SENTINEL, dtype=np.float32), np.arange(n) % 2, ("a", "b"))


def test_dg_trains_on_the_sources_alone_and_tests_on_the_whole_target():
    training, evaluation = split(_sources(), _sentinel_target(), "dg", seed=0, source_val_fraction=0.25)
    assert len(training.target) == 0 and training.target_labeled is None and training.target_val is None
    assert training.source_domains == ("first", "second", "third")
    assert np.bincount(evaluation.source_val.domains).tolist() == [10, 5, 5]  # training-domain validation
    assert len(evaluation.target_test) == 12 and evaluation.protocol == "held_out" and evaluation.oracle_val is None
    assert not (training.source.X == SENTINEL).any() and not (training.source_val.X == SENTINEL).any()


def test_the_test_domain_may_not_be_a_source():
    with pytest.raises(ScenarioError, match="'thick' is also a source"):
        check_generalisation(("original", "thick"), "thick")
    with pytest.raises(ScenarioError, match="also a source"):
        split(_sources(), _domain("second", 10), "dg", seed=0)


def test_leave_one_domain_out_holds_the_validation_domain_out_of_training_whole():
    training, evaluation = split(_sources(), _sentinel_target(), "dg", seed=0, source_val_fraction=0.25,
                                 val_domain="second")
    assert training.source_domains == ("first", "third") and len(training.source) == 60
    assert np.bincount(training.source.domains).tolist() == [40, 20]  # re-indexed: third is now 1
    np.testing.assert_array_equal(training.source.domains, (training.source.X.mean(axis=1) > 15).astype(int))
    assert len(evaluation.source_val) == 20 and np.all(np.abs(evaluation.source_val.X.mean(axis=1) - 10) < 5)
    one_left, _ = split(pool_domains([_domain("first", 8), _domain("second", 8)]), _domain("t", 4), "dg", seed=0,
                        val_domain="first")
    assert one_left.source_domains == () and one_left.source.domains is None  # a single source, as unpooled
    for val_domain in ("target", "fourth"):
        with pytest.raises(ScenarioError, match="val_domain"):
            check_generalisation(("first", "second"), "target", val_domain)
    with pytest.raises(ScenarioError, match="one of several sources"):
        check_generalisation(("first",), "target", "first")


def test_the_oracle_chooses_on_a_share_of_each_test_class_and_is_tested_on_the_rest():
    target = Domain("target", np.arange(40.0).reshape(20, 2), np.arange(20) % 2, ("a", "b"))
    _, evaluation = split(_sources(), target, "dg", seed=0, oracle_fraction=0.2)
    assert np.bincount(evaluation.oracle_val.y).tolist() == [2, 2]
    chosen, tested = set(evaluation.oracle_val.X[:, 0]), set(evaluation.target_test.X[:, 0])
    assert not chosen & tested and len(chosen | tested) == 20


def test_coral_moments_loss_is_domainbeds_penalty():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 3)), rng.normal(2.0, 3.0, size=(5, 3))
    means = ((x.mean(0) - y.mean(0)) ** 2).mean()
    covariances = ((np.cov(x, rowvar=False) - np.cov(y, rowvar=False)) ** 2).mean()
    assert coral_moments_loss(torch.tensor(x), torch.tensor(y)).item() == pytest.approx(means + covariances)


def test_the_discrepancy_of_several_domains_is_its_mean_over_the_pairs():
    groups = [torch.full((2, 1), value) for value in (0.0, 1.0, 3.0)]
    squared_gap = lambda a, b: (a.mean() - b.mean()) ** 2  # noqa: E731
    assert mean_over_pairs(squared_gap, groups).item() == pytest.approx((1 + 9 + 4) / 3)
    assert mean_over_pairs(squared_gap, groups[:2]).item() == 1.0  # two domains: the discrepancy itself
    assert mean_over_pairs(squared_gap, groups[:1]).item() == 0.0


def test_the_multi_domain_discriminator_learns_the_domains_and_reversal_flips_the_features_gradient():
    torch.manual_seed(0)
    discriminator = DomainDiscriminator(2, hidden=8, domains=3)
    features = torch.randn(9, 2, requires_grad=True)
    domains = torch.arange(9) % 3
    assert discriminator(features).shape == (9, 3)
    multi_domain_adversarial_loss(discriminator, features, domains).backward()
    plain = features.grad.clone()
    features.grad = None
    multi_domain_adversarial_loss(discriminator, features, domains, grl=GradientReversal(1.0)).backward()
    torch.testing.assert_close(features.grad, -plain)


def _fit(method_name: str, compose, select: str, **split_options):
    """``method_name`` fitted in dg on three pooled sources and the sentinel target, every array that reaches the
    network during ``fit`` recorded by a forward hook on the backbone."""
    from tlrun.backbones import MLP
    from tlrun.config import instantiate
    from tlrun.methods.base import NullReporter, RunContext

    training, _ = split(_sources(), _sentinel_target(), "dg", seed=0, source_val_fraction=0.25, **split_options)
    cfg = compose(f"method={method_name}", "scenario=dg", "method.epochs=2", "method.batch_size=8",
                  "method.bottleneck_dim=4")
    method = instantiate(cfg.method, backbone=MLP(input_shape=(3,), hidden=[4]))
    seen: list[torch.Tensor] = []
    method.backbone.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach().clone()))
    context = RunContext(reporter=NullReporter(), device="cpu", seed=0, select=select, diagnostics="pca",
                         trainer={"enable_progress_bar": False, "enable_model_summary": False})
    method.fit(training, context)
    return method, seen


@pytest.mark.parametrize("method_name,select,options", [
    ("source_only", "source_val", {}),
    ("dg_coral", "source_val", {}),
    ("dann", "lodo", {"val_domain": "third"}),
])
def test_no_test_domain_sample_reaches_fit(compose, one_torch_thread, method_name, select, options):
    """The sentinel test domain: no array that goes through the network while the method fits (training batches,
    per-epoch selection scores, diagnostics) holds a value of it."""
    method, seen = _fit(method_name, compose, select, **options)
    assert seen and all(not (batch == SENTINEL).any() for batch in seen)
    assert method.fitted_target_labels is None


def test_the_transfer_term_aligns_the_source_domains_in_dg(compose, one_torch_thread):
    from tlrun.backbones import MLP
    from tlrun.config import instantiate
    from tlrun.methods.adaptation import DomainBatch

    training, _ = split(_sources(), _sentinel_target(), "dg", seed=0)
    cfg = compose("method=dann", "scenario=dg", "method.batch_size=12", "method.bottleneck_dim=4")
    method = instantiate(cfg.method, backbone=MLP(input_shape=(3,), hidden=[4]))
    method.bottleneck, method.classifier = method.build_head(2)
    method.build_extra(training)
    assert method.discriminator.domains == 3
    (x, y, domains), *_ = next(iter(method.train_dataloaders(training)))[0].values()
    batch: DomainBatch = method.forward_domains(x, y, x[:0])  # no target batch, as training_step gives it
    batch.source_domains = domains
    # One group per source domain with two samples or more in the batch (a covariance needs two).
    assert batch.across_sources and len(batch.domain_groups("features")) == int((torch.bincount(domains) > 1).sum())
    assert method.transfer_loss(batch).item() > 0


def test_a_domain_aligning_method_refuses_dg_with_one_source(compose):
    from tlrun.backbones import MLP
    from tlrun.config import instantiate
    from tlrun.errors import TlrunError
    from tlrun.methods.base import NullReporter, RunContext

    training, _ = split(_domain("first", 20), _domain("target", 6), "dg", seed=0)
    method = instantiate(compose("method=dg_coral", "scenario=dg").method, backbone=MLP(input_shape=(3,), hidden=[4]))
    with pytest.raises(TlrunError, match="give it several"):
        method.fit(training, RunContext(reporter=NullReporter(), device="cpu", seed=0))


@pytest.mark.parametrize("held_out", ["original", "thick", "rotate", "shrink"])
def test_the_leave_one_domain_out_recipe_trains_on_the_other_domains(compose, held_out):
    cfg = compose("+experiment=dg_digits", f"dataset.target={held_out}")
    assert cfg.scenario.name == "dg" and cfg.trainer.select == "source_val"
    assert list(cfg.dataset.source) == [name for name in ("original", "thick", "rotate", "shrink") if name != held_out]
    assert other_domains(["a", "b", "c"], "b") == ["a", "c"]
    with pytest.raises(ValueError, match="not one of"):
        other_domains(["a", "b"], "c")


def test_compare_s_column_is_the_held_out_domain_in_dg():
    class Run:
        def __init__(self, **tags):
            self.data = type("Data", (), {"tags": tags})()

    assert task_of(Run(scenario="dg", source="a+b", target="c")) == "c"
    assert task_of(Run(scenario="da", source="a+b", target="c")) == "a+b→c"


def test_compare_keeps_dg_runs_of_different_source_lists_apart():
    """Two source lists to one held-out domain: a column each (never one cell averaging both); a held-out domain
    reached from one list keeps its plain column."""
    def run(source, target, value, start):
        return SimpleNamespace(info=SimpleNamespace(status="FINISHED", start_time=start, run_id=f"r{start}"),
                               data=SimpleNamespace(tags={"method": "erm", "scenario": "dg", "source": source,
                                                          "target": target}, params={}, metrics={"target_acc": value}))

    runs = [run("original+rotate", "thick", 0.8, 1), run("original+thin", "thick", 0.4, 2),
            run("original+rotate", "thick", 0.6, 3), run("thick+rotate", "original", 0.5, 4)]
    table = comparison_table(runs)
    assert table.tasks == ["original+rotate→thick", "original+thin→thick", "original"]
    cells = table.rows[0].cells
    assert cells["original+rotate→thick"].values == pytest.approx([80.0, 60.0])
    assert cells["original+thin→thick"].values == pytest.approx([40.0])
    assert cells["original"].values == pytest.approx([50.0])


@pytest.mark.parametrize("overrides,message", [
    (("method=source_only", "trainer.select=lodo"), "scenario=dg's"),
    (("method=dann", "scenario=dg", "dataset.source=[original,rotate]", "trainer.select=entropy"), "without target"),
    (("method=dann", "scenario=dg", "dataset.source=[original,thick]"), "also a source"),
    (("method=source_only", "scenario=dg", "dataset.source=[original]", "trainer.select=lodo"), "one of several"),
    (("method=dann", "scenario=dg", "dataset.source=[original,rotate]", "trainer.select=oracle",
      "scenario.oracle_fraction=0"), "oracle_fraction=0"),
    (("method=coral", "scenario=dg"), "does not fit scenario 'dg'"),
    (("method=source_only", "scenario=dg", "dataset.source=[original,rotate]", "dataset.preprocess=zscore"),
     "statistics of the test domain"),
    (("method=dg_coral", "dataset.source=[original]"), "trains on 1"),
    (("method=dann", "scenario=dg", "dataset.source=[original,rotate]", "trainer.select=lodo"), "trains on 1"),
])
def test_preflight_refuses_what_dg_cannot_do(compose, overrides, message):
    from tlrun.errors import TlrunError
    from tlrun.runner.preflight import preflight

    with pytest.raises(TlrunError, match=message):
        preflight(compose(*overrides))


@pytest.mark.parametrize("overrides,message", [
    (("trainer.select=source_val", "scenario.val_domain=rotate"),
     "scenario.val_domain=rotate is the source held out whole for trainer.select=lodo, and this run selects by "
     "source_val, which would ignore it"),
    (("trainer.select=source_val", "scenario.oracle_fraction=0.3"),
     "scenario.oracle_fraction=0.3 is the test-domain share an oracle .* selects by source_val, which would ignore it"),
    (("scenario=auto", "scenario.val_domain=rotate"),
     "scenario.val_domain=rotate is a setting of scenario=dg, and method source_only's scenario .* is da, which would "
     "ignore it"),
    (("scenario=auto", "scenario.oracle_fraction=0.5"), "scenario.oracle_fraction=0.5 is a setting of scenario=dg"),
])
def test_preflight_refuses_a_setting_the_run_would_ignore(compose, overrides, message):
    from tlrun.errors import TlrunError
    from tlrun.runner.preflight import preflight

    dg = ("method=source_only", "scenario=dg", "dataset.source=[original,rotate,shrink]")
    preflight(compose(*dg, "trainer.select=lodo", "scenario.val_domain=rotate"))  # each setting with its selection
    preflight(compose(*dg, "trainer.select=oracle", "scenario.oracle_fraction=0.3"))
    with pytest.raises(TlrunError, match=message):
        preflight(compose(*dg, *overrides))


@pytest.mark.parametrize("overrides,message", [
    (("method=source_only", "scenario=dg", "dataset.source=[original,rotate,shrink]", "trainer.select=lodo"),
     "dataset.source_val_fraction=0.3: trainer.select=lodo holds a whole source domain out instead"),
    (("method=selftaught",), "scenario selftaught's source is unlabeled, so it would be ignored"),
])
def test_a_source_val_fraction_the_run_would_ignore_is_refused_when_given(compose, monkeypatch, overrides, message):
    from tlrun.errors import TlrunError
    from tlrun.runner import preflight

    cfg = compose(*overrides, "dataset.source_val_fraction=0.3")
    preflight.preflight(cfg)  # a config composed in Python does not say what the command line gave
    monkeypatch.setattr(preflight, "_given_on_command_line", lambda key: key == "dataset.source_val_fraction")
    with pytest.raises(TlrunError, match=message):
        preflight.preflight(cfg)
