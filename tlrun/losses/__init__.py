"""Loss building blocks for deep domain adaptation: small functions of tensors (and tiny modules where there are
parameters), each with its formula in its docstring."""

from tlrun.losses.adversarial import (
    DomainDiscriminator,
    GradientReversal,
    GradientReversalFunction,
    dann_schedule,
    domain_adversarial_loss,
    gradient_reversal,
)
from tlrun.losses.discrepancy import (
    cmd,
    coral_loss,
    gaussian_kernel_matrix,
    mmd_linear,
    mmd_multi_kernel,
    mmd_multi_layer,
)

__all__ = [
    "DomainDiscriminator",
    "GradientReversal",
    "GradientReversalFunction",
    "cmd",
    "coral_loss",
    "dann_schedule",
    "domain_adversarial_loss",
    "gaussian_kernel_matrix",
    "gradient_reversal",
    "mmd_linear",
    "mmd_multi_kernel",
    "mmd_multi_layer",
]
