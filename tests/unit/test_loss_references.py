"""Reference-equality tests: each loss whose authors' formula is public, on a tiny literal batch, against the value
the published formula gives, written out by hand (loops over samples and classes in the paper's notation, never
through tlrun), and, for all but the entropy weights and the unit-row DSN case, against that value pinned as a
literal number too, so that neither the library nor the transcription can drift in a refactor. All in float64."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from tlrun.losses import (
    cmd,
    conditional_adversarial_loss,
    coral_loss,
    difference_loss,
    entropy_weights,
    eszsl_weights,
    minimum_class_confusion,
)

RTOL = 1e-12
PIN_RTOL = 1e-9  # the literals carry 13+ significant digits


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def close(value: torch.Tensor, expected: np.ndarray | float, pinned: float | None = None) -> None:
    """``value`` equals the hand-computed ``expected`` to ``RTOL`` and, when given, the ``pinned`` literal."""
    assert np.allclose(value.detach().numpy(), expected, rtol=RTOL, atol=0.0), (value, expected)
    if pinned is not None:
        assert math.isclose(float(expected), pinned, rel_tol=PIN_RTOL), (float(expected), pinned)


def shannon_entropy(p: np.ndarray, eps: float) -> float:
    """``H(p) = −Σ_k p_k log(p_k + ε)``: ``ε = 0`` is the papers' entropy, ``ε = 1e-5`` the authors' code's
    (CDAN's ``Entropy``, reused by MCC), which tlrun follows."""
    total = 0.0
    for p_k in p:
        total -= p_k * math.log(p_k + eps)
    return total


# --- MCC (Jin et al., ECCV 2020) ------------------------------------------------------------------------------

MCC_LOGITS = [[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [-0.5, 0.2, 2.2], [1.0, 1.0, 0.0]]


def mcc_by_hand(Z: np.ndarray, T: float, eps: float) -> float:
    """MCC as the paper defines it, one step at a time."""
    B, num_classes = Z.shape
    Y = np.zeros_like(Z)  # Ŷ_ij = exp(Z_ij / T) / Σ_j' exp(Z_ij' / T)
    for i in range(B):
        e = [math.exp(Z[i, j] / T) for j in range(num_classes)]
        Y[i] = [e_j / sum(e) for e_j in e]
    H = [shannon_entropy(Y[i], eps) for i in range(B)]  # entropy
    raw = [1.0 + math.exp(-H_i) for H_i in H]
    W = [B * r / sum(raw) for r in raw]  # W_ii = B (1 + e^{−H_i}) / Σ_i' (1 + e^{−H_i'})
    C = np.zeros((num_classes, num_classes))  # C_jj' = Σ_i W_ii Ŷ_ij Ŷ_ij'
    for j in range(num_classes):
        for k in range(num_classes):
            C[j, k] = sum(W[i] * Y[i, j] * Y[i, k] for i in range(B))
    C_tilde = C / C.sum(axis=1, keepdims=True)  # category normalisation: C̃_jj' = C_jj' / Σ_j'' C_jj''
    # L_MCC = (1/|C|) Σ_j Σ_{j'≠j} |C̃_jj'|
    return sum(abs(C_tilde[j, k]) for j in range(num_classes) for k in range(num_classes) if k != j) / num_classes


def test_mcc_equals_the_papers_formula():
    """MCC (Jin et al. 2020): Ŷ = softmax(Z/T), W_ii = B(1+e^{−H(Ŷ_i)})/Σ(1+e^{−H}), C = ŶᵀWŶ, row-normalised,
    L = (1/|C|) Σ_j Σ_{j'≠j} |C̃_jj'|; H with the authors' ε = 1e-5 inside the log (the paper's ε-free
    entropy moves the value by < 1e-5)."""
    Z, T = np.array(MCC_LOGITS), 2.5
    expected = mcc_by_hand(Z, T, eps=1e-5)
    close(minimum_class_confusion(t(MCC_LOGITS), temperature=T), expected, pinned=0.6199429234267277)
    assert abs(mcc_by_hand(Z, T, eps=0.0) - expected) < 1e-5


# --- CDAN+E (Long et al., NeurIPS 2018) -----------------------------------------------------------------------

CDAN_SOURCE_FEATURES = [[1.0, -0.5], [0.2, 0.8], [-1.0, 0.3]]
CDAN_TARGET_FEATURES = [[0.5, 0.5], [-0.3, -1.2]]
CDAN_SOURCE_PROBABILITIES = [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]
CDAN_TARGET_PROBABILITIES = [[0.5, 0.5], [0.99, 0.01]]
CDAN_DISCRIMINATOR = ([0.3, -0.7, 1.1, 0.4], 0.2)  # weights over f ⊗ g (entry a·C + k = f_a g_k), bias


class LinearDiscriminator(nn.Module):
    """``D(h) = uᵀh + b``, one logit per sample, with the literal ``CDAN_DISCRIMINATOR``."""

    def __init__(self) -> None:
        super().__init__()
        u, b = CDAN_DISCRIMINATOR
        self.linear = nn.Linear(len(u), 1).double()
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([u], dtype=torch.float64))
            self.linear.bias.fill_(b)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h).squeeze(1)


def test_cdan_entropy_weights_equal_one_plus_exp_minus_entropy():
    """CDAN+E (Long et al. 2018): w(H(g)) = 1 + e^{−H(g)}, H with the authors' ε = 1e-5."""
    g = np.array(CDAN_SOURCE_PROBABILITIES + CDAN_TARGET_PROBABILITIES)
    expected = [1.0 + math.exp(-shannon_entropy(g_i, eps=1e-5)) for g_i in g]
    close(entropy_weights(torch.from_numpy(g)), np.array(expected))


def test_cdan_e_domain_loss_equals_the_authors_normalised_weighting():
    """CDAN+E (Long et al. 2018) with the weights normalised as in the authors' code (thuml/CDAN
    ``loss.CDAN``): w_i = 1 + e^{−H(g_i)} divided by its sum within the domain, the loss
    Σ_i ŵ_i BCE_i / Σ_i ŵ_i = ½ (Σ_s ŵ_i BCE(D(f_i ⊗ g_i), 1) + Σ_t ŵ_j BCE(D(f_j ⊗ g_j), 0))."""
    u, b = CDAN_DISCRIMINATOR
    domains = (
        (CDAN_SOURCE_FEATURES, CDAN_SOURCE_PROBABILITIES, 1.0),
        (CDAN_TARGET_FEATURES, CDAN_TARGET_PROBABILITIES, 0.0),
    )
    expected = 0.0
    for features, probabilities, label in domains:
        w = [1.0 + math.exp(-shannon_entropy(g, eps=1e-5)) for g in probabilities]
        for f, g, w_i in zip(features, probabilities, w):
            h = [f_a * g_k for f_a in f for g_k in g]  # the multilinear map f ⊗ g, flattened row by row
            d = 1.0 / (1.0 + math.exp(-(sum(u_m * h_m for u_m, h_m in zip(u, h)) + b)))  # D(h) = σ(uᵀh + b)
            bce = -(label * math.log(d) + (1.0 - label) * math.log(1.0 - d))
            expected += 0.5 * (w_i / sum(w)) * bce
    value = conditional_adversarial_loss(
        LinearDiscriminator(), t(CDAN_SOURCE_FEATURES), t(CDAN_TARGET_FEATURES),
        t(CDAN_SOURCE_PROBABILITIES), t(CDAN_TARGET_PROBABILITIES),
    )
    close(value, expected, pinned=0.5316355045628299)


# --- CMD (Zellinger et al., ICLR 2017) ------------------------------------------------------------------------

CMD_SOURCE = [[0.1, 0.9], [0.4, 0.3], [0.8, 0.5], [0.2, 0.7]]
CMD_TARGET = [[0.6, 0.2], [0.9, 0.1], [0.3, 0.4]]


def cmd_by_hand(X: np.ndarray, Y: np.ndarray, K: int, a: float, b: float) -> float:
    """CMD_K as the paper defines it: (1/|b−a|) ‖E(X) − E(Y)‖₂ + Σ_{k=2..K} (1/|b−a|^k) ‖c_k(X) − c_k(Y)‖₂,
    c_k(X) = E((x − E(X))^k), expectations the empirical means over the samples."""
    def expectation(rows: list[list[float]] | np.ndarray) -> list[float]:
        return [sum(row[f] for row in rows) / len(rows) for f in range(len(rows[0]))]

    def norm(v: list[float]) -> float:
        return math.sqrt(sum(v_f * v_f for v_f in v))

    mean_x, mean_y = expectation(X), expectation(Y)
    total = norm([m_x - m_y for m_x, m_y in zip(mean_x, mean_y)]) / abs(b - a)
    for k in range(2, K + 1):
        c_x = expectation([[(x_f - m_f) ** k for x_f, m_f in zip(x, mean_x)] for x in X])
        c_y = expectation([[(y_f - m_f) ** k for y_f, m_f in zip(y, mean_y)] for y in Y])
        total += norm([cx - cy for cx, cy in zip(c_x, c_y)]) / abs(b - a) ** k
    return total


def test_cmd_equals_the_papers_formula_on_the_unit_interval():
    """CMD_5 (Zellinger et al. 2017) of features in [0, 1], where every scale 1/|b−a|^k is 1."""
    expected = cmd_by_hand(np.array(CMD_SOURCE), np.array(CMD_TARGET), K=5, a=0.0, b=1.0)
    close(cmd(t(CMD_SOURCE), t(CMD_TARGET), moments=5), expected, pinned=0.48812985651235385)


def test_cmd_scales_the_kth_moment_by_one_over_the_span_to_the_k():
    """CMD_4 (Zellinger et al. 2017) with bounds [a, b] = [−1, 2]: the mean term over |b−a| = 3, the k-th
    central moment term over 3^k."""
    expected = cmd_by_hand(np.array(CMD_SOURCE), np.array(CMD_TARGET), K=4, a=-1.0, b=2.0)
    close(cmd(t(CMD_SOURCE), t(CMD_TARGET), moments=4, bounds=(-1.0, 2.0)), expected, pinned=0.147988231709132)


# --- Deep CORAL (Sun & Saenko, ECCV 2016 workshops) -----------------------------------------------------------

CORAL_SOURCE = [[1.0, 2.0, 0.0], [0.5, -1.0, 1.5], [2.0, 0.0, -0.5], [-1.0, 1.0, 1.0]]
CORAL_TARGET = [[0.0, 0.3, 2.0], [1.2, -0.4, 0.1], [-0.7, 2.5, 0.0], [0.4, 0.4, -1.3], [1.0, -2.0, 0.6]]


def test_coral_equals_the_papers_formula():
    """Deep CORAL (Sun & Saenko 2016): ℓ = ‖C_S − C_T‖²_F / (4d²) with
    C = (1/(n−1)) (DᵀD − (1/n) (1ᵀD)ᵀ(1ᵀD)), written as in the paper (no explicit centring)."""
    def paper_covariance(D: np.ndarray) -> np.ndarray:
        n = D.shape[0]
        ones = np.ones((1, n))
        return (D.T @ D - (ones @ D).T @ (ones @ D) / n) / (n - 1)

    C_S, C_T = paper_covariance(np.array(CORAL_SOURCE)), paper_covariance(np.array(CORAL_TARGET))
    d = C_S.shape[0]
    expected = sum((C_S[p, q] - C_T[p, q]) ** 2 for p in range(d) for q in range(d)) / (4 * d**2)
    close(coral_loss(t(CORAL_SOURCE), t(CORAL_TARGET)), expected, pinned=0.1336876072530864)


# --- DSN difference loss (Bousmalis et al., NeurIPS 2016) -----------------------------------------------------

DSN_SHARED = [[1.0, 0.5], [0.0, 2.0], [1.5, -0.5], [0.3, 0.3]]
DSN_PRIVATE = [[0.2, 1.0, -0.4], [1.1, 0.0, 0.6], [-0.3, 0.8, 0.9], [0.5, -1.0, 0.2]]


def difference_by_hand(H_c: np.ndarray, H_p: np.ndarray, center: bool, mean: bool, eps: float = 1e-6) -> float:
    """``Σ`` (or the mean) of the squared entries of ``Ĥ_cᵀ Ĥ_p``, the rows L2-normalised as ``h / (‖h‖ + ε)``
    after, with ``center``, subtracting each column's batch mean (the authors' TensorFlow ``difference_loss``)."""
    def prepare(H: np.ndarray) -> np.ndarray:
        if center:
            H = H - H.mean(axis=0)
        return np.array([h / (math.sqrt(sum(h * h)) + eps) for h in H])

    c, p = prepare(H_c), prepare(H_p)
    squares = [sum(c[i, a] * p[i, b] for i in range(len(c))) ** 2 for a in range(c.shape[1]) for b in range(p.shape[1])]
    return sum(squares) / len(squares) if mean else sum(squares)


def test_dsn_difference_loss_is_the_papers_frobenius_norm_on_unit_rows():
    """DSN (Bousmalis et al. 2016): L_difference = ‖H_cᵀ H_p‖²_F. tlrun always L2-normalises the rows
    (``h / (‖h‖ + ε)``, from the authors' code): with ε = 0 and unit-norm rows that is the paper's formula."""
    c, p = np.array(DSN_SHARED), np.array(DSN_PRIVATE)
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    frobenius = sum(v * v for v in (c.T @ p).ravel())
    close(difference_loss(torch.from_numpy(c), torch.from_numpy(p), eps=0.0), frobenius)


def test_dsn_difference_loss_default_is_the_row_normalised_sum():
    """tlrun's default (documented): ‖Ĥ_cᵀ Ĥ_p‖²_F with each row h / (‖h‖ + 1e-6), columns not centred; the
    paper's ‖H_cᵀ H_p‖²_F on the raw codes (no row normalisation) is another number unless the rows are unit-norm."""
    expected = difference_by_hand(np.array(DSN_SHARED), np.array(DSN_PRIVATE), center=False, mean=False)
    close(difference_loss(t(DSN_SHARED), t(DSN_PRIVATE)), expected, pinned=2.9795461080920194)


def test_dsn_difference_loss_as_dsn_uses_it_is_the_authors_centred_mean():
    """The variant DSN trains with (``difference_reduction=mean``, documented in tlrun/methods/dsn.py): the
    authors' code, columns centred over the batch, rows L2-normalised, mean of the d_c × d_p squared entries of
    Ĥ_cᵀ Ĥ_p; ``difference_reduction=sum`` the same summed."""
    c, p = np.array(DSN_SHARED), np.array(DSN_PRIVATE)
    averaged = difference_by_hand(c, p, center=True, mean=True)
    close(difference_loss(t(DSN_SHARED), t(DSN_PRIVATE), center=True, reduction="mean"), averaged,
          pinned=1.1404597243654322)
    summed = difference_by_hand(c, p, center=True, mean=False)
    close(difference_loss(t(DSN_SHARED), t(DSN_PRIVATE), center=True, reduction="sum"), summed)


# --- ESZSL (Romera-Paredes & Torr, ICML 2015) -----------------------------------------------------------------

ESZSL_FEATURES = [[1.0, 0.2, -0.5], [0.3, 1.4, 0.0], [-0.8, 0.5, 1.0], [0.6, -1.0, 0.4], [0.0, 0.7, -1.2]]
ESZSL_LABELS = [0, 1, 2, 1, 0]
ESZSL_SIGNATURES = [[1.0, 0.0], [0.5, 1.0], [-0.4, 0.8]]  # one attribute row per seen class


def test_eszsl_equals_the_papers_closed_form():
    """ESZSL (Romera-Paredes & Torr 2015): V = (XXᵀ + γI)⁻¹ X Y Sᵀ (SSᵀ + λI)⁻¹, X the d × m features,
    Y ∈ {−1, 1}^{m × z} the labels, S the a × z signatures; γ ≠ λ so that swapping them shows."""
    gamma, lamb = 0.5, 2.0
    X = np.array(ESZSL_FEATURES).T  # d × m
    S = np.array(ESZSL_SIGNATURES).T  # a × z
    m, z = X.shape[1], S.shape[1]
    Y = np.array([[1.0 if ESZSL_LABELS[i] == y else -1.0 for y in range(z)] for i in range(m)])
    V = np.linalg.inv(X @ X.T + gamma * np.eye(X.shape[0])) @ X @ Y @ S.T @ np.linalg.inv(
        S @ S.T + lamb * np.eye(S.shape[0])
    )
    value = eszsl_weights(t(ESZSL_FEATURES), torch.tensor(ESZSL_LABELS), t(ESZSL_SIGNATURES), gamma=gamma, lamb=lamb)
    assert value.shape == V.shape == (3, 2)
    close(value, V)
    pinned = [[0.149954687076716, -0.09354891451340927], [-0.04933379414183498, -0.07291901426413219],
              [-0.2822367956132771, 0.20890885374792922]]
    assert np.allclose(V, pinned, rtol=PIN_RTOL, atol=0.0)
