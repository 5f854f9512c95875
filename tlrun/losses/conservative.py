"""Conservative-training penalties: keep a fine-tuned network close to the pre-trained one, in its weights
(L2-SP, Li et al., "Explicit Inductive Bias for Transfer Learning with Convolutional Networks", ICML 2018) or in
its outputs (knowledge distillation with a temperature, Hinton et al. 2015, as Learning without Forgetting uses it
to keep the old task's outputs, Li & Hoiem 2016).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch.nn import functional as F

from tlrun.losses.confusion import check_temperature


def l2sp_penalty(weights: Iterable[torch.Tensor], starting_point: Iterable[torch.Tensor]) -> torch.Tensor:
    """The squared distance to the starting point, summed over the tensors::

        Ω(w) = Σ_j ‖w_j − w⁰_j‖²,   ∂Ω/∂w_j = 2 (w_j − w⁰_j)

    ``starting_point`` holds the pre-trained values ``w⁰`` (no gradient flows into them), in the order of
    ``weights``. It is 0 at the start of fine-tuning, whatever the weights are.
    """
    weights, starting_point = list(weights), list(starting_point)
    if len(weights) != len(starting_point):
        raise ValueError(f"l2sp_penalty: {len(weights)} weight tensors but {len(starting_point)} starting points")
    if not weights:
        raise ValueError("l2sp_penalty: no weights to penalise")
    terms = []
    for w, w0 in zip(weights, starting_point):
        if w.shape != w0.shape:
            raise ValueError(f"l2sp_penalty: weight of shape {tuple(w.shape)} vs starting point {tuple(w0.shape)}")
        terms.append((w - w0.detach()).pow(2).sum())
    return torch.stack(terms).sum()


def l2_penalty(weights: Iterable[torch.Tensor]) -> torch.Tensor:
    """Plain weight decay of the new layers: ``Σ_j ‖w_j‖²``."""
    weights = list(weights)
    if not weights:
        raise ValueError("l2_penalty: no weights to penalise")
    return torch.stack([w.pow(2).sum() for w in weights]).sum()


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Knowledge distillation: the KL divergence from the teacher's softened outputs to the student's, scaled
    by ``τ²`` so that its gradients keep their size as ``τ`` changes::

        L_KD = τ² · (1/n) Σ_i KL( softmax(t_i / τ) ‖ softmax(s_i / τ) )

    0 exactly when the student's logits equal the teacher's (up to a constant per sample); no gradient flows
    into the teacher.
    """
    check_temperature(temperature)
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(
            f"distillation_loss: student and teacher logits must both be (n, C); got {tuple(student_logits.shape)} "
            f"and {tuple(teacher_logits.shape)}"
        )
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return temperature**2 * kl


def feature_distillation_loss(features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Output-level closeness when the pre-trained network has no classifier to distil (weights from a file
    or ImageNet): the mean over samples of the squared distance between the representations::

        L_feat = (1/n) Σ_i ‖f(x_i) − f⁰(x_i)‖² / d
    """
    if features.shape != teacher_features.shape or features.dim() != 2:
        raise ValueError(
            f"feature_distillation_loss: features must both be (n, d); got {tuple(features.shape)} and "
            f"{tuple(teacher_features.shape)}"
        )
    return (features - teacher_features.detach()).pow(2).mean(dim=1).mean()
