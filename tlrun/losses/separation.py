"""The two losses of Domain Separation Networks (Bousmalis et al., "Domain Separation Networks", NeurIPS 2016)
that are not a plain classification or domain loss: the soft orthogonality (difference) constraint between the
shared and the private codes, and the scale-invariant mean squared error of the reconstruction.
"""

from __future__ import annotations

import torch


def difference_loss(
    shared: torch.Tensor, private: torch.Tensor, *, eps: float = 1e-6, center: bool = False, reduction: str = "sum"
) -> torch.Tensor:
    """DSN's soft subspace orthogonality constraint between a batch's shared and private codes::

        L_diff = ‖Ĥ_cᵀ Ĥ_p‖²_F

    with ``Ĥ_c`` (n × d_c) and ``Ĥ_p`` (n × d_p) the code matrices, each row L2-normalised
    (``h_i / (‖h_i‖ + ε)``, ``ε`` = ``eps``). The paper writes ``‖H_cᵀ H_p‖²_F`` on the raw codes; the row
    normalisation, which makes the loss blind to the codes' scale, is the authors' code's, and no setting here
    drops it (the two agree on unit-length rows). By default the columns are not centred and the squares are
    summed, as in the paper: it is ≥ 0 and exactly 0 when every column of ``Ĥ_c`` is orthogonal to every column of
    ``Ĥ_p`` (e.g. the shared codes non-zero only on some samples, the private codes only on the others). Beware
    that for non-negative codes (after a ReLU) this uncentred sum is ≥ the number of non-zero rows, so
    minimising it drives whole codes to zero.

    ``center=True`` subtracts each column's batch mean before the normalisation, and ``reduction="mean"``
    averages the d_c × d_p squared correlations instead of summing them: both together are the authors'
    TensorFlow code, what :class:`~tlrun.methods.dsn.DSN` uses.
    """
    for name, x in (("shared", shared), ("private", private)):
        if x.dim() != 2 or x.shape[0] < 1:
            raise ValueError(f"{name} codes must be 2-D (samples × features), got shape {tuple(x.shape)}")
    if shared.shape[0] != private.shape[0]:
        raise ValueError(f"shared and private codes differ in samples: {shared.shape[0]} vs {private.shape[0]}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if center:
        shared = shared - shared.mean(dim=0, keepdim=True)
        private = private - private.mean(dim=0, keepdim=True)
    H_c = shared / (torch.linalg.vector_norm(shared, dim=1, keepdim=True) + eps)
    H_p = private / (torch.linalg.vector_norm(private, dim=1, keepdim=True) + eps)
    correlation = H_c.T @ H_p
    squares = correlation * correlation
    return squares.mean() if reduction == "mean" else squares.sum()


def scale_invariant_mse(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DSN's scale-invariant mean squared error (Eigen et al. 2014), averaged over the batch::

        L_si_mse = mean_i [ (1/k) ‖d_i‖² − (1/k²) (Σ_a d_ia)² ],    d_i = x_i − x̂_i flattened to k values

    i.e. the (population) variance of each sample's error ``d_i``: it penalises differences between pairs of
    pixels, not the overall intensity, so it is unchanged by adding a constant to a sample's reconstruction.
    The first dimension is the batch.
    """
    if reconstruction.shape != target.shape:
        raise ValueError(
            f"reconstruction and target differ in shape: {tuple(reconstruction.shape)} vs {tuple(target.shape)}"
        )
    if reconstruction.dim() < 2 or reconstruction.shape[0] < 1 or reconstruction[0].numel() < 1:
        raise ValueError(
            f"reconstruction must be a batch (samples × …) of at least one non-empty sample, "
            f"got shape {tuple(reconstruction.shape)}"
        )
    d = (target - reconstruction).reshape(target.shape[0], -1)
    k = d.shape[1]
    return ((d * d).sum(dim=1) / k - d.sum(dim=1) ** 2 / k**2).mean()
