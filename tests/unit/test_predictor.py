"""The predictor's pieces: samples read from every format ``dataset=features`` reads, with or without labels; the
checks of what a model takes; a saved predictor that remembered a GPU reads back on the CPU (its devices relocated)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

from tlrun.data.base import DataError
from tlrun.data.samples import read_samples
from tlrun.errors import TlrunError
from tlrun.predictor import load_predictor

ROWS = np.arange(12, dtype=np.float64).reshape(4, 3) / 10


@pytest.mark.parametrize("write, labeled", [
    (lambda path: np.savez(path.with_suffix(".npz"), X=ROWS, y=[0, 1, 1, 0]), True),
    (lambda path: np.savez(path.with_suffix(".npz"), X=ROWS.T), False),  # samples in columns
    (lambda path: scipy.io.savemat(path.with_suffix(".mat"), {"fts": ROWS, "labels": [[0], [1], [1], [0]]}), True),
    (lambda path: np.savetxt(path.with_suffix(".csv"), np.column_stack([ROWS, [0, 1, 1, 0]]), delimiter=","), True),
    (lambda path: np.savetxt(path.with_suffix(".csv"), ROWS, delimiter=","), False),  # no label column
])
def test_samples_are_read_from_every_features_format_labels_when_present(tmp_path, write, labeled):
    write(tmp_path / "data")
    samples = read_samples(next(tmp_path.iterdir()), "rows", n_features=3)
    assert samples.X == pytest.approx(ROWS) and samples.ids == ("0", "1", "2", "3") and samples.digest
    assert (samples.labels.tolist() == ["0", "1", "1", "0"]) if labeled else samples.labels is None


def test_an_image_folder_is_labeled_by_its_class_folders_or_unlabeled(tmp_path):
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / "classes" / name).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "classes" / name / "a.png")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "b.jpg")
    assert read_samples(tmp_path / "classes", "images").labels.tolist() == ["cat", "dog"]
    assert read_samples(tmp_path / "flat", "images").labels is None
    with pytest.raises(DataError, match="this model takes image files: give a folder"):
        read_samples(tmp_path / "flat" / "b.jpg", "images")


def test_inputs_are_checked_and_a_saved_predictor_reads_back_on_the_cpu(tmp_path):
    from tlrun import api

    predictor = api.fit("no_adaptation", ROWS, ["a", "b", "c", "c"], ROWS)
    method = predictor.method
    method._device = method._classifier.device = torch.device("cuda")  # as a method fitted on a GPU remembers
    loaded = load_predictor(predictor.save(tmp_path / "predictor.pt"))
    assert loaded.method._device == loaded.method._classifier.device == torch.device("cpu")
    assert loaded.predict(ROWS).tolist() == ["a", "b", "c", "c"] and loaded.predict(ROWS[0]).tolist() == ["a"]
    for wrong in (ROWS[:, :2], "a/path.npz", np.array(["x", "y"])):
        with pytest.raises(TlrunError, match="this model takes rows of 3 values"):
            loaded.predict(wrong)
    assert loaded.scores(ROWS) is None  # 1-NN
    with pytest.raises(TlrunError, match="classes= applies to zero-shot models only"):
        loaded.predict(ROWS, classes=["a"])
