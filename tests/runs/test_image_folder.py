"""The generic ImageFolder dataset (domains = sub-folders), a separate test domain for fine-tuning, and the
fine-grained task-adaptation recipe that uses both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tlrun.config import instantiate
from tlrun.data.base import DataError
from tlrun.data.images import ImageFolder
from tlrun.errors import TlrunError
from tlrun.run import run
from tlrun.scenarios import ScenarioError, split

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = ("albatross", "cardinal", "wren")


def _splits_tree(root: Path, per_class: dict[str, int]) -> Path:
    """``root/<split>/<class>/<i>.png``: a class is a colour, each split a brightness."""
    from PIL import Image

    for s, (name, count) in enumerate(per_class.items()):
        for c, label in enumerate(CLASSES):
            folder = root / name / label
            folder.mkdir(parents=True)
            for i in range(count):
                colour = [30 + 40 * s] * 3
                colour[c] = 250 - 12 * i
                Image.new("RGB", (20, 20), tuple(colour)).save(folder / f"{i}.png")
    return root


def test_domains_are_the_sub_folders_and_target_test_is_loaded(tmp_path):
    root = _splits_tree(tmp_path / "birds", {"train": 6, "test": 3})
    dataset = ImageFolder(root=str(root), source="train", target="train", target_test="test")
    dataset.check()
    assert dataset.domains == ("test", "train")
    source, target = dataset.load_pair()
    test = dataset.load_target_test()
    assert source.classes == CLASSES and len(target) == 18 and len(test) == 9
    assert ImageFolder(root=str(root), source="train", target="train").load_target_test() is None


def test_missing_root_unknown_folder_and_unset_domains_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist; arrange the images as <root>/<domain>/<class>/<image>"):
        ImageFolder(root=str(tmp_path / "nowhere"), source="train", target="train").check()
    root = _splits_tree(tmp_path / "birds", {"train": 2})
    with pytest.raises(DataError, match=r"images not found: expected the folder\(s\) .*birds/val"):
        ImageFolder(root=str(root), source="train", target="train", target_test="val").check()
    with pytest.raises(DataError, match="set dataset.source and dataset.target"):
        ImageFolder(root=str(root)).check()


def test_finetune_with_a_separate_test_domain_may_label_the_whole_target(tmp_path):
    root = _splits_tree(tmp_path / "birds", {"train": 6, "test": 3})
    dataset = ImageFolder(root=str(root), source="train", target="train", target_test="test")
    source, target = dataset.load_pair()
    training, evaluation = split(source, target, "finetune", seed=0, target_label_fraction=1.0,
                                 target_test=dataset.load_target_test())
    assert len(training.target) == 18 and len(evaluation.target_test) == 9
    assert not set(training.target.X) & set(evaluation.target_test.X)
    half, _ = split(source, target, "finetune", seed=0, target_label_fraction=0.5, target_test=dataset.load_target_test())
    assert np.bincount(half.target.y).tolist() == [3, 3, 3]
    with pytest.raises(ScenarioError, match="1 needs a separate test domain"):
        split(source, target, "finetune", seed=0, target_label_fraction=1.0)
    with pytest.raises(ScenarioError, match="is the target domain itself"):
        split(source, target, "finetune", seed=0, target_label_fraction=0.5, target_test=target)


def test_the_task_adaptation_recipe_composes_for_every_swept_setting(compose):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from tlrun.backbones import MLP
    from tlrun.config import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        hydra_cfg = hydra_compose("config", overrides=["+experiment=cub200_finetune"], return_hydra_config=True)
    swept = hydra_cfg.hydra.sweeper.params
    methods = str(swept.method).split(",")
    fractions = [float(f) for f in str(swept["scenario.target_label_fraction"]).split(",")]
    assert methods == ["finetune", "l2sp", "distill_finetune"] and fractions == [0.15, 0.3, 0.5, 1.0]
    for method in methods:
        cfg = compose("+experiment=cub200_finetune", f"method={method}", "dataset.root=/data/cub")
        assert cfg.backbone.name == "resnet50" and cfg.backbone.weights == "imagenet"
        assert cfg.dataset.target_test == "test" and cfg.scenario.name == "finetune"
        assert cfg.method.optimizer == "sgd" and cfg.method.iterations_per_epoch == 500
        instantiate(cfg.method, backbone=MLP(input_shape=(12,), hidden=[8]))


def test_the_recipe_runs_end_to_end_on_a_tiny_tree(compose, mlflow_store, tmp_path):
    root = _splits_tree(tmp_path / "birds", {"train": 4, "test": 2})
    accuracy = run(compose(
        "+experiment=cub200_finetune", f"dataset.root={root}", "scenario.target_label_fraction=1.0",
        "backbone=lenet", "backbone.image_size=16", "backbone.weights=none", "trainer=cpu", "method.epochs=1", "method.iterations_per_epoch=2",
        "method.batch_size=4", "method.pretrain_epochs=1", "trainer.enable_progress_bar=false", "diagnostics=false",
        experiment="cub-tiny",
    ))
    assert 0.0 <= accuracy <= 1.0
    client = MlflowClient(tracking_uri=mlflow_store)
    record = client.search_runs([client.get_experiment_by_name("cub-tiny").experiment_id])[0]
    assert record.info.status == "FINISHED"
    assert record.data.params["data.n_target_train"] == "12" and record.data.params["data.n_target_test"] == "6"


def test_a_fraction_of_one_without_a_test_domain_fails_before_the_run(compose):
    with pytest.raises(TlrunError, match="1 needs a separate test domain"):
        run(compose("method=finetune", "scenario.target_labels_per_class=null", "scenario.target_label_fraction=1.0"))


def test_a_closed_form_method_reads_the_separate_test_domain_through_its_backbone(compose, mlflow_store, tmp_path):
    """``dataset.target_test`` of a closed-form run: its images become features as the other domains' do."""
    root = _splits_tree(tmp_path / "birds", {"train": 6, "test": 3})
    accuracy = run(compose(
        "method=no_adaptation", "scenario=finetune", "dataset=image_folder", f"dataset.root={root}",
        "dataset.source=train", "dataset.target=train", "dataset.target_test=test", "scenario.target_labels_per_class=null",
        "scenario.target_label_fraction=1.0", "backbone=resnet18", "backbone.image_size=32", "diagnostics=false",
        experiment="closed-form-target-test",
    ))
    assert 0.0 <= accuracy <= 1.0
    client = MlflowClient(tracking_uri=mlflow_store)
    record = client.search_runs([client.get_experiment_by_name("closed-form-target-test").experiment_id])[0]
    assert record.info.status == "FINISHED" and record.data.params["data.n_target_test"] == "9"
