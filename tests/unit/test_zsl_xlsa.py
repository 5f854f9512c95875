"""The xlsa17 zero-shot release (zsl_xlsa), on tiny files written in the release's exact MATLAB format."""

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from tlrun.config import instantiate
from tlrun.data.base import DataError, sha256_file
from tlrun.data.zsl_xlsa import XLSA17_URL, ZslXlsa, readable_class_name

RAW_NAMES = ["001.Black_footed_Albatross", "killer+whale", "polar_bear", "004.Cat", "zebra"]
SEEN, UNSEEN = (1, 2, 3), (4, 5)  # 1-based class ids, as in the release
TRAIN, VAL = (1, 2), (3,)  # the tuning split: train and validation classes split the seen ones
PER_CLASS, DIM, ATTRIBUTES = 4, 6, 3


def _release_arrays(seed: int = 0) -> tuple[dict, dict]:
    """``res101.mat`` and ``att_splits.mat`` variables: features d × N, N × 1 labels, a × C unit-norm attributes,
    a C × 1 cell array of names, 1-based column-vector indices. Each seen class gives 3 trainval and 1 test_seen
    sample; every unseen sample is in test_unseen. ``train_loc``/``val_loc`` split the seen classes (:data:`TRAIN`,
    :data:`VAL`) and, as some copies of the release do, list every sample of those classes, test_seen ones
    included."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(1, len(RAW_NAMES) + 1), PER_CLASS).astype(np.float64)[:, None]
    features = rng.normal(size=(DIM, len(labels)))
    att = rng.uniform(0.1, 1.0, size=(ATTRIBUTES, len(RAW_NAMES)))
    att /= np.linalg.norm(att, axis=0)
    ids = np.arange(1, len(labels) + 1, dtype=np.float64)
    position = np.tile(np.arange(PER_CLASS), len(RAW_NAMES))
    seen = np.isin(labels[:, 0], SEEN)
    names = np.empty((len(RAW_NAMES), 1), dtype=object)
    names[:, 0] = RAW_NAMES
    splits = {
        "att": att,
        "original_att": att * 100,
        "allclasses_names": names,
        "trainval_loc": ids[seen & (position < 3)][:, None],
        "train_loc": ids[np.isin(labels[:, 0], TRAIN)][:, None],
        "val_loc": ids[np.isin(labels[:, 0], VAL)][:, None],
        "test_seen_loc": ids[seen & (position == 3)][:, None],
        "test_unseen_loc": ids[~seen][:, None],
    }
    return {"features": features, "labels": labels}, splits


def _write_release(folder: Path, samples: dict | None = None, splits: dict | None = None) -> Path:
    default_samples, default_splits = _release_arrays()
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / "res101.mat", default_samples if samples is None else samples)
    scipy.io.savemat(folder / "att_splits.mat", default_splits if splits is None else splits)
    return folder


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """``<tmp>/xlsa17/data`` holding the AWA2 folder, as the release unzips."""
    root = tmp_path / "xlsa17" / "data"
    _write_release(root / "AWA2")
    return root


def test_load_gives_parts_labels_attributes_unseen_and_names(data_root):
    samples, splits = _release_arrays()
    ds = ZslXlsa(root=str(data_root), release="AWA2")
    ds.check()
    zsl = ds.load_zeroshot()
    assert [len(part) for part in zsl.domains()] == [9, 3, 8]
    assert [part.name for part in zsl.domains()] == ["trainval", "test_seen", "test_unseen"]
    assert zsl.unseen == (3, 4)
    assert zsl.classes == ("Black footed Albatross", "killer whale", "polar bear", "Cat", "zebra")
    assert all(part.classes == zsl.classes for part in zsl.domains())
    np.testing.assert_array_equal(zsl.train.y, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(zsl.test_seen.y, [0, 1, 2])
    np.testing.assert_array_equal(zsl.test_unseen.y, [3] * 4 + [4] * 4)
    rows = splits["test_unseen_loc"][:, 0].astype(int) - 1
    np.testing.assert_array_equal(zsl.test_unseen.X, samples["features"].T[rows])
    assert zsl.train.X.dtype == np.float64 and zsl.train.y.dtype == np.int64 and zsl.train.X.shape == (9, DIM)
    assert zsl.attributes.shape == (5, ATTRIBUTES)
    np.testing.assert_allclose(zsl.attributes, splits["att"].T)
    folder = data_root / "AWA2"
    assert zsl.train.checksums == {
        "res101.mat": sha256_file(folder / "res101.mat"),
        "att_splits.mat": sha256_file(folder / "att_splits.mat"),
    }


@pytest.mark.parametrize("layout", ["data_folder", "release_folder"])
@pytest.mark.parametrize("release", ["AWA2", "awa2"])
def test_both_root_layouts_and_any_case(data_root, layout, release):
    root = data_root if layout == "data_folder" else data_root / "AWA2"
    ds = ZslXlsa(root=str(root), release=release)
    ds.check()
    assert len(ds.load_zeroshot().train) == 9


def test_features_saved_with_samples_in_rows_are_accepted(tmp_path):
    samples, _ = _release_arrays()
    samples["features"] = samples["features"].T
    _write_release(tmp_path / "CUB", samples=samples)
    zsl = ZslXlsa(root=str(tmp_path), release="cub").load_zeroshot()
    np.testing.assert_array_equal(zsl.train.X[0], samples["features"][0])


@pytest.mark.parametrize("preprocess, norm", [("none", None), ("l2", 1.0)])
def test_preprocess_applies_to_every_part(data_root, preprocess, norm):
    zsl = ZslXlsa(root=str(data_root), preprocess=preprocess).load_zeroshot()
    if norm is not None:
        for part in zsl.domains():
            np.testing.assert_allclose(np.linalg.norm(part.X, axis=1), norm)


def test_missing_files_say_where_they_go_and_where_to_download(tmp_path):
    with pytest.raises(DataError) as info:
        ZslXlsa(root=str(tmp_path), release="SUN").check()
    message = str(info.value)
    assert "SUN/res101.mat" in message and "xlsa17/data" in message and XLSA17_URL in message
    with pytest.raises(DataError, match="dataset.root is not set.*xlsa17.zip"):
        ZslXlsa(root=None).check()
    with pytest.raises(DataError, match="does not exist"):
        ZslXlsa(root=str(tmp_path / "nowhere")).check()


def test_one_file_missing_is_named(data_root):
    (data_root / "AWA2" / "att_splits.mat").unlink()
    with pytest.raises(DataError, match=r"AWA2/att_splits.mat not found.*xlsa17.zip"):
        ZslXlsa(root=str(data_root)).check()


def test_root_at_another_release_folder_is_refused(data_root):
    with pytest.raises(DataError, match="is the AWA2 folder.*dataset.release=CUB"):
        ZslXlsa(root=str(data_root / "AWA2"), release="CUB").check()


@pytest.mark.parametrize("option, value, pattern", [
    ("release", "ImageNet", "unknown dataset.release 'ImageNet'.*AWA1, AWA2, CUB, SUN, APY"),
    ("source", "train", "no domain 'train'"),
    ("preprocess", "pca", "unknown preprocessing"),
])
def test_check_rejects_bad_options(data_root, option, value, pattern):
    with pytest.raises(DataError, match=pattern):
        ZslXlsa(root=str(data_root), **{option: value}).check()


def test_check_reads_no_mat_content(data_root, monkeypatch):
    for name in ("res101.mat", "att_splits.mat"):
        (data_root / "AWA2" / name).write_bytes(b"not read by check")

    def refuse(*args, **kwargs):
        raise AssertionError("check() read a .mat file")

    monkeypatch.setattr(scipy.io, "loadmat", refuse)
    ZslXlsa(root=str(data_root)).check()


def test_corrupt_file_is_a_data_error(data_root):
    path = data_root / "AWA2" / "res101.mat"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=r"cannot read .*res101.mat.*xlsa17.zip"):
        ZslXlsa(root=str(data_root)).load_zeroshot()


@pytest.mark.parametrize("file, key", [("att_splits.mat", "test_unseen_loc"), ("att_splits.mat", "allclasses_names"),
                                       ("res101.mat", "labels")])
def test_missing_key_is_named_with_its_file(tmp_path, file, key):
    samples, splits = _release_arrays()
    (samples if file == "res101.mat" else splits).pop(key)
    _write_release(tmp_path / "AWA2", samples, splits)
    with pytest.raises(DataError, match=rf"{file} has no variable {key}; it holds: "):
        ZslXlsa(root=str(tmp_path)).load_zeroshot()


def test_trainval_holding_an_unseen_class_is_refused(tmp_path):
    _, splits = _release_arrays()
    unseen_sample = splits["test_unseen_loc"][:1]
    splits["trainval_loc"] = np.vstack([splits["trainval_loc"], unseen_sample])
    splits["test_unseen_loc"] = splits["test_unseen_loc"][1:]
    _write_release(tmp_path / "AWA2", splits=splits)
    with pytest.raises(DataError, match="trainval_loc holds samples of unseen classes.*: Cat"):
        ZslXlsa(root=str(tmp_path)).load_zeroshot()


def test_test_seen_class_absent_from_trainval_is_refused(tmp_path):
    _, splits = _release_arrays()
    splits["trainval_loc"] = splits["trainval_loc"][3:]  # drops every trainval sample of class 1
    _write_release(tmp_path / "AWA2", splits=splits)
    with pytest.raises(DataError, match="test_seen_loc holds classes without a trainval sample: Black footed Albatross"):
        ZslXlsa(root=str(tmp_path)).load_zeroshot()


def test_sample_in_two_parts_is_refused(tmp_path):
    _, splits = _release_arrays()
    splits["test_seen_loc"] = np.vstack([splits["test_seen_loc"], splits["trainval_loc"][:1]])
    _write_release(tmp_path / "AWA2", splits=splits)
    with pytest.raises(DataError, match="in both trainval_loc and test_seen_loc"):
        ZslXlsa(root=str(tmp_path)).load_zeroshot()


@pytest.mark.parametrize("key, value, pattern", [
    ("test_unseen_loc", np.array([[0.0], [20.0]]), r"test_unseen_loc holds sample indices 0..20, outside 1..20"),
    ("trainval_loc", np.array([[1.0], [21.0]]), r"outside 1..20"),
    ("att", np.ones((ATTRIBUTES, 4)), r"att is 3 x 4 .* allclasses_names names 5 classes"),
])
def test_inconsistent_splits_are_refused(tmp_path, key, value, pattern):
    _, splits = _release_arrays()
    splits[key] = value
    _write_release(tmp_path / "AWA2", splits=splits)
    with pytest.raises(DataError, match=pattern):
        ZslXlsa(root=str(tmp_path)).load_zeroshot()


def test_labels_outside_the_classes_are_refused(tmp_path):
    samples, _ = _release_arrays()
    samples["labels"][0, 0] = 6
    _write_release(tmp_path / "AWA2", samples=samples)
    with pytest.raises(DataError, match=r"res101.mat: labels must be class ids 1..5"):
        ZslXlsa(root=str(tmp_path)).load_zeroshot()


def test_source_target_interface_is_refused(data_root):
    with pytest.raises(DataError, match="serves scenario zeroshot only"):
        ZslXlsa(root=str(data_root)).load_pair()


@pytest.mark.parametrize("raw, readable", [
    ("001.Black_footed_Albatross", "Black footed Albatross"),
    ("killer+whale", "killer whale"),
    ("airplane_cabin", "airplane cabin"),
    ("aeroplane", "aeroplane"),
])
def test_readable_class_name(raw, readable):
    assert readable_class_name(raw) == readable


def test_config_passes_release_not_name(compose, data_root):
    cfg = compose("dataset=zsl_xlsa", f"dataset.root={data_root}", "dataset.release=awa2")
    assert list(cfg.dataset.scenarios) == ["zeroshot"]
    ds = instantiate(cfg.dataset)
    assert isinstance(ds, ZslXlsa) and ds.release == "awa2" and (ds.source, ds.target) == ("trainval", "test")
    ds.check()


# ------------------------------------------------------------------------------- split=val (tuning split)


def test_default_split_is_test_and_ignores_the_tuning_split(data_root):
    zsl = ZslXlsa(root=str(data_root)).load_zeroshot()
    assert [part.name for part in zsl.domains()] == ["trainval", "test_seen", "test_unseen"]
    assert zsl.split_rule.startswith("test: ")


def test_split_val_trains_on_train_loc_and_scores_the_val_classes_unseen(data_root):
    samples, splits = _release_arrays()
    ds = ZslXlsa(root=str(data_root), split="val", val_seen_fraction=0.34)
    ds.check()
    zsl = ds.load_zeroshot()
    assert [part.name for part in zsl.domains()] == ["train", "train_heldout", "val"]
    assert zsl.split_rule.startswith("val: ") and "train_loc, val_loc" in zsl.split_rule
    # The validation class (3, id 2) is the unseen one: no training sample carries it.
    assert zsl.unseen == (2,)
    assert not np.isin(zsl.train.y, zsl.unseen).any() and set(np.unique(zsl.train.y)) == {0, 1}
    # No sample of the test parts: the test_seen_loc samples listed in train_loc/val_loc are dropped.
    features = samples["features"].T
    test_rows = {features[i].tobytes() for i in np.concatenate([splits["test_seen_loc"], splits["test_unseen_loc"]])[:, 0].astype(int) - 1}
    for part in zsl.domains():
        assert not any(row.tobytes() in test_rows for row in part.X)
    np.testing.assert_array_equal(zsl.test_unseen.y, [2, 2, 2])
    # 3 samples per train class remain; round(0.34 * 3) = 1 of each is held out as the GZSL seen test set.
    np.testing.assert_array_equal(zsl.test_seen.y, [0, 1])
    np.testing.assert_array_equal(zsl.train.y, [0, 0, 1, 1])
    assert not {row.tobytes() for row in zsl.train.X} & {row.tobytes() for row in zsl.test_seen.X}
    # The held-out draw is fixed (independent of any run seed) and 0 leaves test_seen empty.
    again = ZslXlsa(root=str(data_root), split="val", val_seen_fraction=0.34).load_zeroshot()
    np.testing.assert_array_equal(again.test_seen.X, zsl.test_seen.X)
    assert len(ZslXlsa(root=str(data_root), split="val", val_seen_fraction=0.0).load_zeroshot().test_seen) == 0


def test_split_val_falls_back_to_the_class_lists(tmp_path):
    _, splits = _release_arrays()
    del splits["train_loc"], splits["val_loc"]
    folder = _write_release(tmp_path / "AWA2", splits=splits)
    with pytest.raises(DataError, match="no train_loc/val_loc.*trainclasses1.txt"):
        ZslXlsa(root=str(tmp_path), split="val").load_zeroshot()
    (folder / "trainclasses1.txt").write_text("001.Black_footed_Albatross\nkiller+whale\n")
    (folder / "valclasses1.txt").write_text("polar_bear\n")
    zsl = ZslXlsa(root=str(tmp_path), split="val", val_seen_fraction=0.0).load_zeroshot()
    assert zsl.unseen == (2,) and set(np.unique(zsl.train.y)) == {0, 1} and len(zsl.test_unseen) == 3
    assert "trainclasses1.txt" in zsl.split_rule and "valclasses1.txt" in zsl.train.checksums


@pytest.mark.parametrize("change, pattern", [
    ("unseen_in_val", "val_loc holds samples of the unseen \\(test\\) classes .*Cat"),
    ("shared_class", "train_loc and val_loc share classes .*polar bear"),
])
def test_split_val_refuses_a_tuning_split_that_touches_test_classes_or_shares_classes(tmp_path, change, pattern):
    _, splits = _release_arrays()
    if change == "unseen_in_val":
        splits["val_loc"] = np.vstack([splits["val_loc"], splits["test_unseen_loc"][:1]])
    else:
        splits["train_loc"] = np.vstack([splits["train_loc"], splits["val_loc"][:1]])
    _write_release(tmp_path / "AWA2", splits=splits)
    ZslXlsa(root=str(tmp_path)).load_zeroshot()  # split=test does not read the tuning split
    with pytest.raises(DataError, match=pattern):
        ZslXlsa(root=str(tmp_path), split="val").load_zeroshot()


@pytest.mark.parametrize("option, value, pattern", [
    ("split", "trainval", "dataset.split must be one of test, val"),
    ("val_seen_fraction", 1.0, "val_seen_fraction must be in"),
])
def test_check_rejects_bad_split_options(data_root, option, value, pattern):
    with pytest.raises(DataError, match=pattern):
        ZslXlsa(root=str(data_root), **{option: value}).check()


def test_a_split_val_run_scores_the_validation_classes(compose, mlflow_store, tmp_path):
    """End to end through the runner: 7 classes, train 1-3, val 4-5, test unseen 6-7."""
    from mlflow.tracking import MlflowClient

    from tlrun.run import run

    rng = np.random.default_rng(1)
    n_classes, per_class = 7, 10
    att = rng.uniform(0.1, 1.0, size=(5, n_classes))
    att /= np.linalg.norm(att, axis=0)
    labels = np.repeat(np.arange(1, n_classes + 1), per_class).astype(np.float64)[:, None]
    features = (rng.normal(size=(8, 5)) @ att)[:, labels[:, 0].astype(int) - 1] + 0.05 * rng.normal(size=(8, len(labels)))
    ids = np.arange(1, len(labels) + 1, dtype=np.float64)
    position = np.tile(np.arange(per_class), n_classes)
    klass = labels[:, 0]
    names = np.empty((n_classes, 1), dtype=object)
    names[:, 0] = [f"class_{k}" for k in range(1, n_classes + 1)]
    seen = klass <= 5
    splits = {"att": att, "allclasses_names": names,
              "trainval_loc": ids[seen & (position < 8)][:, None], "test_seen_loc": ids[seen & (position >= 8)][:, None],
              "test_unseen_loc": ids[~seen][:, None],
              "train_loc": ids[klass <= 3][:, None], "val_loc": ids[(klass > 3) & seen][:, None]}
    root = tmp_path / "data"
    _write_release(root / "AWA2", {"features": features, "labels": labels}, splits)
    accuracy = run(compose("method=eszsl", "dataset=zsl_xlsa", f"dataset.root={root}", "dataset.split=val",
                           "backbone=identity", experiment="zsl-xlsa-val"))
    client = MlflowClient(tracking_uri=mlflow_store)
    record = client.search_runs([client.get_experiment_by_name("zsl-xlsa-val").experiment_id],
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert record.data.tags["unseen"] == "class 4,class 5" and record.data.tags["target"] == "val"
    assert record.data.metrics["target_acc"] == pytest.approx(accuracy) and "gzsl_seen_acc" in record.data.metrics
