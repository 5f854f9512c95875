"""DeViSE-style label embedding for zero-shot learning (Frome et al., NIPS 2013).

The same compatibility and ranking loss as :mod:`tlrun.methods.zsl_attribute`, with the class vectors taken from
the class *names* instead of attribute tables: ``v_y = E(template.format(name=y))`` for a sentence-embedding
model ``E`` installed locally (``label_embeddings=sentence``: all-MiniLM-L6-v2, the optional extra
``tlrun[embeddings]``), or read from a vectors file (``label_embeddings=PATH``; see
:mod:`tlrun.methods.components.label_embeddings`).
DeViSE's loss sums the hinge over every violating class (``violations=sum``)::

    L = (1/n) Σ_n Σ_{m ≠ y_n} max(0, k − f(x_n) · g(s_{y_n}) + f(x_n) · g(s_m))
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from tlrun.methods.components.label_embeddings import embed_class_names
from tlrun.methods.settings import check_label_embedding
from tlrun.methods.zsl_attribute import AttributeEmbedding
from tlrun.scenarios import ClassDescriptions


class LabelEmbedding(AttributeEmbedding):
    """:class:`~tlrun.methods.zsl_attribute.AttributeEmbedding` over embeddings of the class names.

    Args:
        label_embeddings: ``sentence`` (the local sentence-embedding model) or a vectors file's path.
        label_template: the text embedded for a class, ``{name}`` standing for its name (sentence model only).
        violations: ``sum``, DeViSE's (see :class:`~tlrun.methods.zsl_attribute.AttributeEmbedding`).
        (every other argument: see :class:`~tlrun.methods.zsl_attribute.AttributeEmbedding`.)
    """

    def __init__(
        self, backbone: nn.Module, label_embeddings: str = "sentence", label_template: str = "{name}",
        violations: str = "sum", **kwargs: Any,
    ) -> None:
        super().__init__(backbone, violations=violations, **kwargs)
        check_label_embedding(type(self).__name__, label_embeddings=label_embeddings, label_template=label_template)
        self.label_embeddings = str(label_embeddings)
        self.label_template = str(label_template)
        self._vectors: dict[str, np.ndarray] = {}

    def class_vectors(self, classes: ClassDescriptions) -> np.ndarray:
        """The embeddings of the class names (computed once per name)."""
        missing = [name for name in classes.names if name not in self._vectors]
        if missing:
            vectors = embed_class_names(missing, self.label_embeddings, self.label_template)
            self._vectors.update(zip(missing, np.asarray(vectors, dtype=np.float64)))
        return np.stack([self._vectors[name] for name in classes.names])
