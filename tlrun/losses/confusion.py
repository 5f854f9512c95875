"""The two losses of Simultaneous Deep Transfer (Tzeng et al., "Simultaneous Deep Transfer Across Domains and
Tasks", ICCV 2015): the domain confusion loss, which pushes a domain classifier's output towards the uniform
distribution, and the soft label loss, which transfers the source's inter-class similarities (the per-class mean
of the temperature-softened predictions) to the target.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def domain_confusion_loss(domain_logits: torch.Tensor) -> torch.Tensor:
    """The domain confusion loss of a one-logit domain classifier (``σ(z)`` = P(source)): the cross-entropy of
    its output against the uniform domain distribution::

        L_conf = −(1/n) Σ_i [ ½ log σ(z_i) + ½ log(1 − σ(z_i)) ] = (1/n) Σ_i ½ [softplus(−z_i) + softplus(z_i)]

    It is minimal, equal to ``log 2``, exactly at ``z_i = 0`` (the classifier cannot tell the domains apart).
    """
    if domain_logits.dim() != 1 or domain_logits.shape[0] < 1:
        raise ValueError(
            f"domain_logits must hold one logit per sample (shape (n,), n ≥ 1), got shape {tuple(domain_logits.shape)}"
        )
    return 0.5 * (F.softplus(-domain_logits) + F.softplus(domain_logits)).mean()


def check_logits_and_labels(logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> None:
    """Raise a ``ValueError`` unless ``logits`` is ``(n, C)`` (``C`` = ``num_classes`` when given) and ``labels``
    holds ``n`` integer class indices in ``[0, C)``."""
    if logits.dim() != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits must be 2-D (samples × classes) with at least one sample, got {tuple(logits.shape)}")
    C = logits.shape[1]
    if num_classes is not None and C != num_classes:
        raise ValueError(f"logits must have {num_classes} columns (one per class), got shape {tuple(logits.shape)}")
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must hold one class index per sample (shape ({logits.shape[0]},)), got shape {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if bool((labels < 0).any()) or bool((labels >= C).any()):
        raise ValueError(f"labels must be class indices in [0, {C}), got {labels.tolist()}")


def check_temperature(temperature: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


def class_soft_labels(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int, temperature: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-class soft labels of a labelled (source) batch, computed without gradient::

        l^{(y)} = mean_{i : y_i = y} softmax(z_i / τ)

    Returns ``(soft_labels, present)``: ``soft_labels`` is ``C × C`` with row ``y`` = ``l^{(y)}`` (each row of a
    present class sums to 1; rows of classes absent from the batch are zeros) and ``present`` the ``(C,)`` boolean
    mask of the classes in the batch.
    """
    check_logits_and_labels(logits, labels, num_classes)
    check_temperature(temperature)
    with torch.no_grad():
        probabilities = torch.softmax(logits.detach() / temperature, dim=1)
        sums = probabilities.new_zeros(num_classes, num_classes).index_add_(0, labels, probabilities)
        counts = torch.bincount(labels, minlength=num_classes)
        present = counts > 0
        soft_labels = sums / counts.clamp_min(1).to(sums.dtype)[:, None]
    return soft_labels, present


def soft_label_loss(
    logits: torch.Tensor, labels: torch.Tensor, soft_labels: torch.Tensor, temperature: float = 2.0
) -> torch.Tensor:
    """The soft label loss: the cross-entropy of the temperature-softened predictions against the soft label of
    each sample's class::

        L_soft = −(1/n) Σ_i Σ_k l^{(y_i)}_k log softmax(z_i / τ)_k

    with ``l^{(y)}`` row ``y`` of ``soft_labels`` (``C × C``, e.g. from :func:`class_soft_labels` or a
    :class:`SoftLabelBank`; used as a fixed target, detached).
    """
    if soft_labels.dim() != 2 or soft_labels.shape[0] != soft_labels.shape[1]:
        raise ValueError(f"soft_labels must be C × C, got shape {tuple(soft_labels.shape)}")
    check_logits_and_labels(logits, labels, soft_labels.shape[0])
    check_temperature(temperature)
    targets = soft_labels.detach().to(logits.dtype)[labels]
    return -(targets * F.log_softmax(logits / temperature, dim=1)).sum(dim=1).mean()


class SoftLabelBank(nn.Module):
    """The online version of the per-class soft labels: a ``C × C`` buffer ``soft_labels`` whose rows start
    uniform (``1/C``) and follow an exponential moving average of each batch's :func:`class_soft_labels`::

        l^{(y)} ← m · l^{(y)} + (1 − m) · l^{(y)}_batch      for the classes y present in the batch

    (``m`` = ``momentum``; rows of absent classes are left as they are; every row keeps summing to 1).
    Calling the module gives :func:`soft_label_loss` against the current soft labels.
    """

    def __init__(self, num_classes: int, temperature: float = 2.0, momentum: float = 0.9) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        check_temperature(temperature)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.num_classes = num_classes
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.soft_labels: torch.Tensor
        self.register_buffer("soft_labels", torch.full((num_classes, num_classes), 1.0 / num_classes))

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Fold a labelled batch into the moving average; returns the updated ``soft_labels``."""
        batch, present = class_soft_labels(logits, labels, self.num_classes, self.temperature)
        batch = batch.to(self.soft_labels)
        present = present.to(self.soft_labels.device)
        blended = self.momentum * self.soft_labels + (1.0 - self.momentum) * batch
        self.soft_labels.copy_(torch.where(present[:, None], blended, self.soft_labels))
        return self.soft_labels

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:func:`soft_label_loss` of ``logits`` against the current soft labels of ``labels``."""
        return soft_label_loss(logits, labels, self.soft_labels, self.temperature)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, temperature={self.temperature}, momentum={self.momentum}"
