"""Several source domains (``dataset.source=[a,b]``): pooled with each sample's domain kept, split per domain, named
in the run's tags."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tlrun.data.base import DataError, Domain, pool_domains, source_label
from tlrun.data.digits import Digits
from tlrun.data.features import Features
from tlrun.run import run
from tlrun.scenarios import ScenarioError, check_sources, split


def _domain(name: str, n: int, classes=("a", "b"), d: int = 3, offset: float = 0.0) -> Domain:
    rng = np.random.default_rng(len(name))
    return Domain(name, rng.normal(offset, 1.0, (n, d)), np.arange(n) % len(classes), tuple(classes))


def test_pooling_concatenates_in_order_and_keeps_each_samples_domain():
    first, second = _domain("first", 5), _domain("second", 3, offset=10.0)
    pooled = pool_domains([first, second])
    assert pooled.name == "first+second" and pooled.domain_names == ("first", "second")
    np.testing.assert_array_equal(pooled.X, np.concatenate([first.X, second.X]))
    np.testing.assert_array_equal(pooled.y, np.concatenate([first.y, second.y]))
    np.testing.assert_array_equal(pooled.domain_index, [0, 0, 0, 0, 0, 1, 1, 1])
    assert pool_domains([first]) is first  # one source stays as it is


@pytest.mark.parametrize("other", [_domain("other", 4, classes=("a", "c")), _domain("other", 4, d=5)])
def test_pooling_refuses_domains_of_different_label_spaces_or_features(other):
    with pytest.raises(DataError, match="other"):
        pool_domains([_domain("first", 4), other])


def test_the_source_label_joins_the_sources():
    assert source_label("amazon") == "amazon"
    assert source_label(["amazon", "dslr"]) == "amazon+dslr"
    assert source_label(None) == ""


def test_digits_pools_the_sources_from_the_source_half_and_draws_the_target_from_the_other():
    single_original, single_thick = Digits(source="original", target="thick").load_pair()
    pooled, target = Digits(source=["original", "rotate"], target="thick").load_pair()
    single_rotate, _ = Digits(source="rotate", target="thick").load_pair()
    assert pooled.domain_names == ("original", "rotate") and len(pooled) == 2 * len(single_original)
    np.testing.assert_array_equal(pooled.X[: len(single_original)], single_original.X)
    np.testing.assert_array_equal(pooled.X[len(single_original):], single_rotate.X)
    np.testing.assert_array_equal(target.X, single_thick.X)


def test_features_map_labels_over_every_source(tmp_path):
    for name, labels in (("one", [0, 1]), ("two", [1, 2]), ("three", [0, 1, 2])):
        np.savez(tmp_path / f"{name}.npz", X=np.arange(2.0 * len(labels)).reshape(len(labels), 2), y=np.array(labels))
    dataset = Features(root=str(tmp_path), source=["one", "two"], target="three")
    # Each source must hold the target's classes: "one" lacks class 2.
    with pytest.raises(DataError, match="only in target: 2"):
        dataset.load_pair()
    assert dataset.load("two").classes == ("0", "1", "2")


def test_a_repeated_source_is_a_problem_named_before_loading():
    assert any("more than once" in problem for problem in Digits(source=["thin", "thin"], target="thick").problems())


def test_source_validation_is_held_out_of_every_source_domain():
    pooled = pool_domains([_domain("first", 40), _domain("second", 20, offset=10.0)])
    training, evaluation = split(pooled, _domain("target", 10), "da", seed=0, source_val_fraction=0.25)
    assert training.source_domains == ("first", "second")
    assert np.bincount(training.source.domains).tolist() == [30, 15]
    assert np.bincount(evaluation.source_val.domains).tolist() == [10, 5]
    # Each training sample keeps its own domain: the second domain's samples were drawn around 10.
    np.testing.assert_array_equal(training.source.domains, (training.source.X.mean(axis=1) > 5).astype(int))


def test_one_source_keeps_no_domain_index():
    training, evaluation = split(_domain("first", 40), _domain("target", 10), "da", seed=0, source_val_fraction=0.25)
    assert training.source_domains == () and training.source.domains is None and evaluation.source_val.domains is None


def test_scenarios_of_one_source_refuse_several():
    check_sources("da", ("a", "b"))
    check_sources("finetune", ("a",))
    with pytest.raises(ScenarioError, match="pooled in: da, semi_da"):
        check_sources("finetune", ("a", "b"))


def test_a_multi_source_run_tags_every_source(compose, mlflow_store):
    run(compose("method=coral", "dataset.source=[original,rotate]", "dataset.target=thick", experiment="multi-source"))
    client = MlflowClient(tracking_uri=mlflow_store)
    record, = client.search_runs([client.get_experiment_by_name("multi-source").experiment_id])
    assert record.info.status == "FINISHED"
    assert record.data.tags["source"] == "original+rotate" and record.data.tags["target"] == "thick"
    assert int(record.data.params["data.n_source_train"]) == 2 * round(0.8 * 896)  # 0.2 held out of each domain


def test_methods_that_read_source_domains_get_each_samples_domain_in_their_batches(compose):
    from tlrun.backbones import MLP
    from tlrun.config import instantiate

    pooled = pool_domains([_domain("first", 12), _domain("second", 12, offset=10.0)])
    training, _ = split(pooled, _domain("target", 8), "da", seed=0)
    method = instantiate(compose("method=dann", "method.batch_size=4").method, backbone=MLP(input_shape=(3,), hidden=[4]))
    pairs, *_ = next(iter(method.train_dataloaders(training)))  # (batches by name, batch index, loader index)
    assert len(pairs["source"]) == 2  # (x, y): a method that does not read the domains sees no change
    method.reads_source_domains = True
    x, y, domains = next(iter(method.train_dataloaders(training)))[0]["source"]
    np.testing.assert_array_equal(domains.numpy(), (x.mean(dim=1) > 5).long().numpy())
