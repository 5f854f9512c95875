"""Several source domains (``dataset.source=[a,b]``): pooled with each sample's domain kept, split per domain, named
in the run's tags."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tlrun.data.base import DataError, Domain, pool_domains, source_label
from tlrun.data.digits import Digits
from tlrun.data.features import Features
from tlrun.data.images import OFFICE_HOME_CLASSES, ImageFolder, Office31, OfficeHome
from tlrun.run import run
from tlrun.scenarios import ScenarioError, check_sources, check_target_not_a_source, split
from tests.helpers import office31_tree


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


def test_digits_splits_the_source_half_between_the_sources_and_draws_the_target_from_the_other():
    single_original, single_thick = Digits(source="original", target="thick").load_pair()
    pooled, target = Digits(source=["original", "rotate"], target="thick").load_pair()
    assert pooled.domain_names == ("original", "rotate") and abs(len(pooled) - len(single_original)) <= 10
    first, second = (pooled.X[pooled.domain_index == k] for k in (0, 1))
    # Each source holds its own images: the original ones are rows of the single source, none seen twice.
    original_rows = {row.tobytes() for row in single_original.X}
    assert all(row.tobytes() in original_rows for row in first)
    assert len(first) + len(second) == len(pooled) and abs(len(first) - len(second)) <= 10
    for k in (0, 1):  # every class in every source
        assert set(pooled.y[pooled.domain_index == k].tolist()) == set(range(10))
    np.testing.assert_array_equal(target.X, single_thick.X)
    unrotated = Digits(source=["rotate", "original"], target="thick").load_pair()[0]
    original_part = unrotated.X[unrotated.domain_index == 1]  # the other share of the same half
    assert not {row.tobytes() for row in original_part} & {row.tobytes() for row in first}


def test_features_map_labels_over_every_source(tmp_path):
    for name, labels in (("one", [0, 1]), ("two", [1, 2]), ("three", [0, 1, 2])):
        np.savez(tmp_path / f"{name}.npz", X=np.arange(2.0 * len(labels)).reshape(len(labels), 2), y=np.array(labels))
    dataset = Features(root=str(tmp_path), source=["one", "two"], target="three")
    # Each source must hold the target's classes: "one" lacks class 2.
    with pytest.raises(DataError, match="only in target: 2"):
        dataset.load_pair()
    assert dataset.load("two").classes == ("0", "1", "2")


def test_features_pool_every_source_under_one_label_mapping(tmp_path):
    for name, labels in (("one", ["cat", "dog"]), ("two", ["dog", "cat", "cat"]), ("three", ["cat", "dog"])):
        np.savez(tmp_path / f"{name}.npz", X=np.full((len(labels), 2), float(len(name))), y=np.array(labels))
    pooled, target = Features(root=str(tmp_path), source=["one", "two"], target="three").load_pair()
    assert pooled.classes == ("cat", "dog") and pooled.domain_names == ("one", "two")
    np.testing.assert_array_equal(pooled.y, [0, 1, 1, 0, 0])
    np.testing.assert_array_equal(pooled.domain_index, [0, 0, 1, 1, 1])
    assert pooled.files == (str(tmp_path / "one.npz"), str(tmp_path / "two.npz")) and len(target) == 2


def _class_folders(root, domains, classes, per_class: int = 2):
    """``root/<domain>/<class>/<i>.png``: tiny images, a class a colour."""
    from PIL import Image

    for domain in domains:
        for c, name in enumerate(classes):
            (root / domain / name).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (6, 6), (40 * c, 60 * i, 90)).save(root / domain / name / f"{i}.png")
    return root


@pytest.mark.parametrize("dataset", ["office31", "office_home", "image_folder"])
def test_image_folder_datasets_pool_several_source_folders(tmp_path, dataset):
    if dataset == "office31":
        loader = Office31(root=str(office31_tree(tmp_path, per_class=2)), source=["amazon", "dslr"], target="webcam")
    elif dataset == "office_home":
        root = _class_folders(tmp_path, ("Art", "Clipart", "Product"), OFFICE_HOME_CLASSES[:3])
        loader = OfficeHome(root=str(root), source=["Art", "Product"], target="Clipart")
    else:
        root = _class_folders(tmp_path, ("left", "middle", "right"), ("a", "b", "c"))
        loader = ImageFolder(root=str(root), source=["left", "right"], target="middle")
    loader.check()
    pooled, target = loader.load_pair()
    first, second = loader.sources
    assert pooled.name == f"{first}+{second}" and pooled.domain_names == (first, second) and len(pooled) == 12
    np.testing.assert_array_equal(pooled.domain_index, np.repeat([0, 1], 6))
    assert all(f"/{first}/" in path for path in pooled.X[:6]) and all(f"/{second}/" in path for path in pooled.X[6:])
    np.testing.assert_array_equal(pooled.y[:6], pooled.y[6:])
    assert len(pooled.checksums) == 2 and len(target) == 6


def test_an_image_folder_source_that_lacks_a_target_class_is_named(tmp_path):
    root = _class_folders(tmp_path, ("left", "right"), ("a", "b"))
    _class_folders(tmp_path, ("small",), ("a",))
    with pytest.raises(DataError, match="only in target: b"):
        ImageFolder(root=str(root), source=["left", "small"], target="right").load_pair()


def test_a_repeated_source_or_an_empty_list_is_named_before_loading():
    assert any("more than once" in problem for problem in Digits(source=["thin", "thin"], target="thick").problems())
    assert any("is empty" in problem for problem in Digits(source=[], target="thick").problems())


def test_a_target_among_the_labeled_sources_it_is_scored_against_is_refused(compose, tmp_path):
    from tlrun.runner.preflight import preflight

    for scenario in ("da", "semi_da", "finetune"):
        with pytest.raises(ScenarioError, match="is also a source"):
            check_target_not_a_source(scenario, ("a", "b"), "b", separate_test=False)
    check_target_not_a_source("finetune", ("a",), "a", separate_test=True)  # a separate test domain is scored
    check_target_not_a_source("selftaught", ("a",), "a", separate_test=False)  # an unlabeled source trains no label
    for name in ("a", "b"):
        np.savez(tmp_path / f"{name}.npz", X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    with pytest.raises(ScenarioError, match="is also a source"):
        preflight(compose("dataset=features", f"dataset.root={tmp_path}", "dataset.source=[a,b]", "dataset.target=b"))
    # Digits draws a domain's source and target samples from disjoint halves: a no-shift control is allowed.
    preflight(compose("dataset.source=[original,thin]", "dataset.target=original"))


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
    pooled, _ = Digits(source=["original", "rotate"], target="thick").load_pair()
    per_source = np.bincount(pooled.domain_index)
    assert int(record.data.params["data.n_source_train"]) == sum(round(0.8 * n) for n in per_source)  # 0.2 of each out


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


def test_per_domain_batches_hold_batch_size_samples_of_every_domain_each_once_per_pass():
    from tlrun.backbones.inputs import PerDomainBatches

    domains = np.array([0] * 20 + [1] * 9 + [2] * 13)
    batches = PerDomainBatches(domains, per_domain=4, seed=0)
    epoch = list(batches)
    assert len(epoch) == len(batches) == 5  # the largest domain's full batches: 20 // 4
    for batch in epoch:
        np.testing.assert_array_equal(domains[batch], np.repeat([0, 1, 2], 4))
    drawn = np.concatenate(epoch)
    first = drawn[np.isin(drawn, np.flatnonzero(domains == 0))]
    assert len(set(first)) == 20  # the largest domain: every sample once
    second = drawn[np.isin(drawn, np.flatnonzero(domains == 1))]
    assert set(second) == set(np.flatnonzero(domains == 1)) and len(second) == 20  # the smaller ones cycle
    assert [list(batch) for batch in epoch] != [list(batch) for batch in batches]  # the next epoch draws anew
    assert [list(batch) for batch in PerDomainBatches(domains, 4, seed=0)] == [list(batch) for batch in epoch]


def test_per_domain_batches_of_two_processes_are_disjoint_and_a_small_domain_fills_what_it_can():
    from tlrun.backbones.inputs import PerDomainBatches

    domains = np.array([0] * 16 + [1] * 16)
    ranks = [np.concatenate(list(PerDomainBatches(domains, 4, seed=3, rank=rank, world_size=2))) for rank in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1]) and len(set(ranks[0]) | set(ranks[1])) == 32
    small = PerDomainBatches(np.array([0] * 16 + [1] * 3), 4, seed=0)  # a source smaller than a batch: all of it
    assert small.per_domain == 3 and len(small) == 5


def test_per_source_batches_reach_a_method_as_a_batch_size_share_of_each_source(compose):
    from tlrun.backbones import MLP
    from tlrun.config import instantiate

    pooled = pool_domains([_domain("first", 30), _domain("second", 12, offset=10.0)])
    training, _ = split(pooled, _domain("target", 8), "da", seed=0)
    method = instantiate(compose("method=m3sda", "method.batch_size=4", "method.source_batches=per_source").method,
                         backbone=MLP(input_shape=(3,), hidden=[4]))
    x, y, domains = next(iter(method.train_dataloaders(training)))[0]["source"]
    np.testing.assert_array_equal(domains.numpy(), [0] * 4 + [1] * 4)
