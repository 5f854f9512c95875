"""Representations learned on unlabeled data: the first step of self-taught learning (Raina, Battle, Lee, Packer &
Ng, ICML 2007) and of the k-means baselines of self-taught clustering.

:func:`make_encoder` builds one by name; every encoder has ``fit(X) -> self`` on unlabeled samples ``X``
(``n × d``) and ``transform(X) -> codes`` (``n × k``, float64):

- ``none``: the identity, ``z = x`` (the raw-features baseline).
- ``pca``: ``z = Wᵀ (x − μ)``, ``W`` the ``dim`` leading principal directions of the unlabeled data.
- ``sparse_coding``: Raina et al.'s sparse coding. A dictionary of ``n_atoms`` bases ``b_j`` is learned by

  ``min_{B, a} Σ_i ½ ‖x_i − Σ_j a_ij b_j‖² + β ‖a_i‖₁   s.t.  ‖b_j‖ ≤ 1``

  (scikit-learn's ``MiniBatchDictionaryLearning``), and a sample's features are its sparse code
  ``a(x) = argmin_a ½ ‖x − B a‖² + β ‖a‖₁`` (``SparseCoder``, coordinate descent), with ``a ≥ 0`` when
  ``positive``. The penalty is relative to the data: ``β = sparsity · σ``, ``σ`` the root mean square of the
  entries of the coded vectors, so scaling the data scales the codes alike, and a basis is used when its
  correlation with the residual, about ``‖x‖ / √d`` for a ``d``-dimensional vector, exceeds ``β``: one default
  serves 3 × 3 pixel patches and 800-d histograms. When the rows are images
  (``image_shape`` known) and ``patch_size`` is set, the bases are learned on ``patch_size × patch_size``
  patches (every channel), every patch position (stride 1) is coded, and the codes are sum-pooled over a
  ``pool_grid × pool_grid`` grid of image regions, ``z = [Σ_{p ∈ region r} a(x_p)]_r`` (``n_atoms · pool_grid²``
  features; the single-layer patch-and-pool pipeline of Coates, Lee & Ng, AISTATS 2011), which tolerates small
  shifts of the strokes: on the embedded digits it is what lets the codes beat raw pixels with one label per
  class (``benchmarks/results/selftaught_digits.md``). Feature vectors are coded whole.
- ``autoencoder``: a one-hidden-layer MLP autoencoder, ``h = f(W₁ x̃ + c₁)`` (``f``: ReLU or sigmoid),
  ``x̂ = W₂ h + c₂``, trained with Adam on ``mean_i ‖x_i − x̂_i‖² + λ ‖h_i‖₁`` (``λ = sparsity``: a sparse
  autoencoder), where ``x̃`` is ``x`` with a random fraction ``noise`` of its entries zeroed (a denoising
  autoencoder; ``noise = 0``: plain). The codes are ``h`` of the clean input. Inputs are divided by one scalar,
  their root mean square on the unlabeled data, so that the defaults fit any data scale. Deterministic on the CPU
  given the seed; a progress bar appears when training lasts over two seconds.

Encoders also say how well they reconstruct: :meth:`Encoder.reconstruction_error` is
``Σ ‖x − x̂‖² / Σ ‖x − x̄‖²`` (``x̄`` the mean of the unlabeled data; patches for patch-based sparse coding): 0 is
perfect, 1 is no better than predicting the mean. The defaults suit pixels in [0, 1] (the embedded digits) and
SURF histograms alike.

Imports numpy only at module level (scikit-learn, torch and rich when fitting).
"""

from __future__ import annotations

import inspect
import time
import warnings
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import numpy as np

from tlrun.progress import progress_bar


class Encoder(ABC):
    """A representation learned on unlabeled samples."""

    #: The training objective after each epoch, for encoders trained by epochs (else empty).
    losses: list[float]

    def __init__(self) -> None:
        self.losses = []

    @abstractmethod
    def fit(self, X: np.ndarray) -> "Encoder":
        """Learn the representation on the unlabeled rows of ``X`` (``n × d``)."""

    @abstractmethod
    def transform(self, X: np.ndarray) -> np.ndarray:
        """The codes of the rows of ``X`` (``n × k``, float64)."""

    @abstractmethod
    def reconstruction_error(self, X: np.ndarray) -> float:
        """``Σ ‖x − x̂‖² / Σ ‖x − x̄‖²`` over the rows of ``X`` (``x̄``: the training mean)."""


def _as_rows(X: np.ndarray) -> np.ndarray:
    rows = np.asarray(X, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"encoders take an (n, d) array of samples, got shape {rows.shape}")
    return rows


def _relative_error(X: np.ndarray, reconstruction: np.ndarray, mean: np.ndarray) -> float:
    return float(((X - reconstruction) ** 2).sum() / max(((X - mean) ** 2).sum(), 1e-300))


#: Sparse coding codes at most this many vectors (patches or rows) at once.
CODES_PER_CHUNK = 100_000


class Identity(Encoder):
    """``z = x``: the raw features."""

    def fit(self, X: np.ndarray) -> "Identity":
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return _as_rows(X)

    def reconstruction_error(self, X: np.ndarray) -> float:
        return 0.0


class PrincipalComponents(Encoder):
    """``z = Wᵀ (x − μ)`` with the ``dim`` leading principal directions ``W`` of the unlabeled data (PCA)."""

    def __init__(self, dim: int = 30) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"pca: dim must be an integer >= 1, got {dim!r}")
        self.dim = dim

    def fit(self, X: np.ndarray) -> "PrincipalComponents":
        from sklearn.decomposition import PCA

        X = _as_rows(X)
        if self.dim > min(X.shape):
            raise ValueError(f"pca: dim={self.dim} exceeds min(samples, features) = {min(X.shape)} of the unlabeled data")
        self._pca = PCA(n_components=self.dim, svd_solver="full").fit(X)  # exact SVD: nothing random
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return self._pca.transform(_as_rows(X))

    def reconstruction_error(self, X: np.ndarray) -> float:
        X = _as_rows(X)
        return _relative_error(X, self._pca.inverse_transform(self._pca.transform(X)), self._pca.mean_)


@contextmanager
def _quiet_coordinate_descent() -> Iterator[None]:
    """Silence scikit-learn's lasso ConvergenceWarning: coordinate descent stops at its iteration cap on some
    patches with duality gaps of ~1e-6 against tolerances of ~1e-8, immaterial for the codes."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        yield


class SparseCoding(Encoder):
    """Sparse codes on a dictionary learned from the unlabeled data (see the module docstring for the objective).

    Args:
        n_atoms: the number of bases ``b_j`` (codes per patch or row).
        sparsity: ``β`` relative to the root mean square of the coded values.
        positive: constrain the codes to ``a ≥ 0`` (non-negative sparse coding); signed codes otherwise.
        patch_size: side of the square patches coded when the rows are images; ``None`` codes whole rows.
        pool_grid: patch codes are summed over a ``pool_grid × pool_grid`` grid of image regions.
        max_patches: the dictionary is learned on at most this many random training patches (or rows).
        batch_size, max_iter: of ``MiniBatchDictionaryLearning`` (it also stops early when its cost settles).
        image_shape: ``(C, H, W)`` of the rows when they are flattened images, else ``None``.
    """

    def __init__(
        self,
        n_atoms: int = 32,
        sparsity: float = 0.45,
        positive: bool = True,
        patch_size: int | None = 3,
        pool_grid: int = 3,
        max_patches: int = 100_000,
        batch_size: int = 256,
        max_iter: int = 10,
        seed: int = 0,
        image_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("n_atoms", n_atoms), ("pool_grid", pool_grid), ("max_patches", max_patches),
                            ("batch_size", batch_size), ("max_iter", max_iter)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"sparse_coding: {name} must be an integer >= 1, got {value!r}")
        if not sparsity > 0:
            raise ValueError(f"sparse_coding: sparsity must be > 0, got {sparsity!r}")
        if patch_size is not None and (not isinstance(patch_size, int) or patch_size < 1):
            raise ValueError(
                f"sparse_coding: patch_size must be an integer >= 1 or null (code whole rows), got {patch_size!r}"
            )
        self.n_atoms, self.sparsity, self.positive = n_atoms, float(sparsity), bool(positive)
        self.pool_grid, self.max_patches, self.batch_size, self.max_iter, self.seed = (
            pool_grid, max_patches, batch_size, max_iter, seed)
        #: ``(C, H, W)`` when patches are coded, else ``None`` (whole rows).
        self.image_shape = tuple(image_shape) if image_shape is not None and patch_size is not None else None
        self.patch_size = patch_size if self.image_shape is not None else None
        if self.image_shape is not None:
            if len(self.image_shape) != 3:
                raise ValueError(f"sparse_coding: image_shape must be (C, H, W), got {image_shape!r}")
            positions = min(self.image_shape[1:]) - patch_size + 1
            if positions < pool_grid:
                raise ValueError(
                    f"sparse_coding: {patch_size}×{patch_size} patches of {self.image_shape[1]}×{self.image_shape[2]} "
                    f"images leave {max(positions, 0)} positions per side, fewer than pool_grid={pool_grid}"
                )

    def _patches(self, X: np.ndarray) -> np.ndarray:
        """``(n, P, P, C·p²)``: every ``p × p`` patch of every image (stride 1), or ``(n, 1, 1, d)`` whole rows."""
        X = _as_rows(X)
        if self.image_shape is None:
            return X[:, None, None, :]
        from numpy.lib.stride_tricks import sliding_window_view

        channels, height, width = self.image_shape
        if X.shape[1] != channels * height * width:
            raise ValueError(f"sparse_coding: rows of {X.shape[1]} values are not {self.image_shape} images")
        windows = sliding_window_view(X.reshape(len(X), channels, height, width), (self.patch_size,) * 2, axis=(2, 3))
        windows = windows.transpose(0, 2, 3, 1, 4, 5)  # n, rows, columns, C, p, p
        return windows.reshape(*windows.shape[:3], -1)

    def fit(self, X: np.ndarray) -> "SparseCoding":
        from sklearn.decomposition import MiniBatchDictionaryLearning, SparseCoder

        vectors = self._patches(X)
        vectors = vectors.reshape(-1, vectors.shape[-1])
        if len(vectors) > self.max_patches:
            vectors = vectors[np.random.default_rng(self.seed).choice(len(vectors), self.max_patches, replace=False)]
        self.penalty = self.sparsity * float(np.sqrt((vectors**2).mean()))
        learner = MiniBatchDictionaryLearning(
            n_components=self.n_atoms, alpha=self.penalty, batch_size=self.batch_size, max_iter=self.max_iter,
            fit_algorithm="cd", positive_code=self.positive, random_state=self.seed,
        )
        with _quiet_coordinate_descent():
            learner.fit(vectors)
        self.dictionary = learner.components_
        self._mean = vectors.mean(axis=0)
        self._coder = SparseCoder(
            dictionary=self.dictionary, transform_algorithm="lasso_cd", transform_alpha=self.penalty,
            positive_code=self.positive,
        )
        return self

    def _coded_chunks(self, X: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The coded vectors ``(m, P, Q, C·p²)`` and their codes ``(m, P, Q, n_atoms)``, a chunk of rows at a time
        (at most :data:`CODES_PER_CHUNK` vectors, so that large sets of images stay within memory)."""
        vectors = self._patches(X)
        per_row = vectors.shape[1] * vectors.shape[2]
        for start in range(0, len(vectors), max(1, CODES_PER_CHUNK // per_row)):
            chunk = vectors[start : start + max(1, CODES_PER_CHUNK // per_row)]
            with _quiet_coordinate_descent():
                codes = self._coder.transform(chunk.reshape(-1, chunk.shape[-1]))
            yield chunk, codes.reshape(*chunk.shape[:3], self.n_atoms)

    def _pool(self, codes: np.ndarray) -> np.ndarray:
        """``(m, n_atoms · pool_grid²)``: the codes summed over each region of the grid (region-major)."""
        if self.image_shape is None:
            return codes[:, 0, 0, :]
        row_edges, column_edges = (np.linspace(0, size, self.pool_grid + 1).round().astype(int) for size in codes.shape[1:3])
        regions = [
            codes[:, top:bottom, left:right].sum(axis=(1, 2))
            for top, bottom in zip(row_edges[:-1], row_edges[1:])
            for left, right in zip(column_edges[:-1], column_edges[1:])
        ]
        return np.concatenate(regions, axis=1)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.concatenate([self._pool(codes) for _, codes in self._coded_chunks(X)])

    def reconstruction_error(self, X: np.ndarray) -> float:
        residual = spread = 0.0
        for vectors, codes in self._coded_chunks(X):
            residual += float(((vectors - codes @ self.dictionary) ** 2).sum())
            spread += float(((vectors - self._mean) ** 2).sum())
        return residual / max(spread, 1e-300)


class Autoencoder(Encoder):
    """A one-hidden-layer (optionally sparse and denoising) MLP autoencoder; the codes are the hidden layer.

    Args:
        hidden: the code size.
        activation: ``sigmoid`` or ``relu``.
        noise: the fraction of input entries zeroed during training (masking noise; 0: none).
        sparsity: ``λ``, the weight of the codes' L1 norm in the loss.
        epochs, batch_size, lr, weight_decay: Adam's training schedule.
        device: where torch trains and encodes.
    """

    ACTIVATIONS = ("sigmoid", "relu")

    def __init__(
        self,
        hidden: int = 128,
        activation: str = "relu",
        noise: float = 0.3,
        sparsity: float = 0.02,
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 0.01,
        weight_decay: float = 0.0,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        for name, value in (("hidden", hidden), ("epochs", epochs), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"autoencoder: {name} must be an integer >= 1, got {value!r}")
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"autoencoder: unknown activation {activation!r}; choose one of: {', '.join(self.ACTIVATIONS)}")
        if not 0.0 <= noise < 1.0:
            raise ValueError(f"autoencoder: noise must be in [0, 1), got {noise!r}")
        if sparsity < 0 or weight_decay < 0 or not lr > 0:
            raise ValueError(
                f"autoencoder: need sparsity >= 0, weight_decay >= 0 and lr > 0 (got {sparsity!r}, {weight_decay!r}, {lr!r})"
            )
        self.hidden, self.activation, self.noise, self.sparsity = hidden, activation, float(noise), float(sparsity)
        self.epochs, self.batch_size, self.lr, self.weight_decay = epochs, batch_size, float(lr), float(weight_decay)
        self.seed, self.device = seed, device

    def _tensor(self, X: np.ndarray):
        import torch

        return torch.as_tensor(_as_rows(X) / self._scale, dtype=torch.float32, device=self.device)

    def fit(self, X: np.ndarray) -> "Autoencoder":
        import torch

        X = _as_rows(X)
        self._scale = max(float(np.sqrt((X**2).mean())), 1e-12)
        inputs = self._tensor(X)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            nonlinearity = torch.nn.Sigmoid() if self.activation == "sigmoid" else torch.nn.ReLU()
            self._encoder = torch.nn.Sequential(torch.nn.Linear(X.shape[1], self.hidden), nonlinearity).to(self.device)
            self._decoder = torch.nn.Linear(self.hidden, X.shape[1]).to(self.device)
        parameters = [*self._encoder.parameters(), *self._decoder.parameters()]
        optimizer = torch.optim.Adam(parameters, lr=self.lr, weight_decay=self.weight_decay)
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.losses = []
        with progress_bar("autoencoder", self.epochs, transient=True, delay_s=2.0) as bar:
            for _ in range(self.epochs):
                total = 0.0
                for batch in torch.randperm(len(inputs), generator=generator, device=self.device).split(self.batch_size):
                    clean = inputs[batch]
                    corrupted = clean
                    if self.noise > 0:
                        corrupted = clean * (torch.rand(clean.shape, generator=generator, device=self.device) >= self.noise)
                    codes = self._encoder(corrupted)
                    loss = ((self._decoder(codes) - clean) ** 2).sum(dim=1).mean()
                    loss = loss + self.sparsity * codes.abs().sum(dim=1).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(batch)
                self.losses.append(total / len(inputs))
                bar.update()
        self._mean = X.mean(axis=0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self._encoder(self._tensor(X)).double().cpu().numpy()

    def reconstruction_error(self, X: np.ndarray) -> float:
        import torch

        with torch.no_grad():
            reconstruction = self._decoder(self._encoder(self._tensor(X))).double().cpu().numpy() * self._scale
        return _relative_error(_as_rows(X), reconstruction, self._mean)


_ENCODERS: dict[str, type[Encoder]] = {
    "none": Identity,
    "pca": PrincipalComponents,
    "sparse_coding": SparseCoding,
    "autoencoder": Autoencoder,
}
ENCODERS: tuple[str, ...] = tuple(_ENCODERS)
#: Constructor arguments :func:`make_encoder` sets itself (for the encoders that take them), not options.
_CONTEXT_ARGUMENTS = ("seed", "device", "image_shape")


def encoder_option_names(name: str) -> tuple[str, ...]:
    """The options the encoder ``name`` accepts: its constructor's arguments, less the context ones."""
    parameters = inspect.signature(_ENCODERS[name].__init__).parameters
    return tuple(option for option in parameters if option not in ("self", *_CONTEXT_ARGUMENTS))


def make_encoder(
    name: str,
    seed: int = 0,
    *,
    device: str = "cpu",
    image_shape: tuple[int, ...] | None = None,
    **options: Any,
) -> Encoder:
    """Build the encoder ``name`` (one of :data:`ENCODERS`) with its ``options``.

    ``seed`` seeds the encoder's randomness (dictionary initialisation and minibatches, network initialisation,
    noise); ``device`` is where the autoencoder computes; ``image_shape`` (``(C, H, W)`` when the rows are
    flattened images) lets sparse coding code patches. Unknown names, unknown options and bad values raise
    ``ValueError``.
    """
    if name not in _ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of: {', '.join(ENCODERS)}")
    valid = encoder_option_names(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"encoder {name!r} has no option {', '.join(map(repr, unknown))}; "
            + (f"its options: {', '.join(valid)}" if valid else "it takes no options")
        )
    cls = _ENCODERS[name]
    given = {"seed": seed, "device": device, "image_shape": None if image_shape is None else tuple(image_shape)}
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{key: value for key, value in given.items() if key in accepted}, **options)


def options_for(name: str, options_by_encoder: Mapping[str, Mapping[str, Any]] | None, what: str) -> dict[str, Any]:
    """The entry of ``name`` in a per-encoder options mapping (``{sparse_coding: {n_atoms: 64}, ...}``), checking
    that every key names an encoder; ``what`` names the mapping in the error message."""
    from tlrun.config import options_entry

    return options_entry(name, options_by_encoder, ENCODERS, what, "encoder", "{sparse_coding: {n_atoms: 64}}")


def learn_and_encode(
    name: str, options: Mapping[str, Any], unlabeled: np.ndarray, target: np.ndarray,
    image_shape: tuple[int, ...] | None, seed: int, device: str, reporter: Any,
) -> tuple[Encoder, np.ndarray, dict[str, float]]:
    """What the self-taught methods share: fit the encoder ``name`` on the ``unlabeled`` rows (images of
    ``image_shape``, if any) with the run's seed and device, log its training objective per epoch to
    ``reporter`` as ``encoder_loss`` (step = epoch) when it has one, and encode ``target``. Returns the encoder,
    the target's codes, and ``encoder_fit_s`` (the fitting time) with the ``target_`` :func:`encoding_metrics`."""
    encoder = make_encoder(name, seed, device=device, image_shape=image_shape, **options)
    started = time.perf_counter()
    encoder.fit(np.asarray(unlabeled))
    metrics = {"encoder_fit_s": time.perf_counter() - started}
    for epoch, loss in enumerate(encoder.losses):
        reporter.log_metrics({"encoder_loss": loss}, step=epoch)
    target = np.asarray(target)
    codes = encoder.transform(target)
    metrics.update(encoding_metrics(encoder, target, codes, prefix="target_"))
    return encoder, codes, metrics


def encoding_metrics(encoder: Encoder, X: np.ndarray, codes: np.ndarray, prefix: str) -> dict[str, float]:
    """What is worth logging about the codes of ``X``: ``{prefix}reconstruction_error`` (relative, see
    :meth:`Encoder.reconstruction_error`), ``{prefix}code_dim`` and ``{prefix}code_zero_fraction`` (sparsity)."""
    return {
        f"{prefix}reconstruction_error": encoder.reconstruction_error(X),
        f"{prefix}code_dim": float(codes.shape[1]),
        f"{prefix}code_zero_fraction": float(np.mean(codes == 0)),
    }
