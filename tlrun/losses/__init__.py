"""Loss building blocks for deep domain adaptation, fine-tuning and zero-shot learning: small functions of tensors (and tiny modules where there are
parameters), each with its formula in its docstring."""

from tlrun.losses.adversarial import (
    DomainDiscriminator,
    GradientReversal,
    GradientReversalFunction,
    classifier_discrepancy,
    dann_schedule,
    domain_adversarial_loss,
    gradient_reversal,
    multi_domain_adversarial_loss,
    open_set_boundary_loss,
    pada_class_weights,
    soft_maximum,
)
from tlrun.losses.conditional import (
    RandomizedMultilinearMap,
    conditional_adversarial_loss,
    entropy,
    entropy_weights,
    minimum_class_confusion,
    multilinear_map,
)
from tlrun.losses.conservative import (
    distillation_loss,
    feature_distillation_loss,
    l2_penalty,
    l2sp_penalty,
)
from tlrun.losses.confusion import (
    SoftLabelBank,
    class_soft_labels,
    domain_confusion_loss,
    soft_label_loss,
)
from tlrun.losses.discrepancy import (
    cmd,
    coral_loss,
    coral_moments_loss,
    gaussian_kernel_matrix,
    mean_over_pairs,
    mmd_linear,
    mmd_multi_kernel,
    mmd_multi_layer,
    moment_distance,
)
from tlrun.losses.pixel import (
    PixelDiscriminator,
    PixelGenerator,
    discriminator_loss,
    generator_loss,
)
from tlrun.losses.ranking import (
    compatibility,
    eszsl_weights,
    hinge_ranking_loss,
)
from tlrun.losses.separation import (
    difference_loss,
    scale_invariant_mse,
)

__all__ = [
    "DomainDiscriminator",
    "GradientReversal",
    "GradientReversalFunction",
    "PixelDiscriminator",
    "PixelGenerator",
    "RandomizedMultilinearMap",
    "SoftLabelBank",
    "class_soft_labels",
    "classifier_discrepancy",
    "cmd",
    "compatibility",
    "conditional_adversarial_loss",
    "coral_loss",
    "coral_moments_loss",
    "dann_schedule",
    "difference_loss",
    "discriminator_loss",
    "distillation_loss",
    "domain_adversarial_loss",
    "domain_confusion_loss",
    "entropy",
    "entropy_weights",
    "eszsl_weights",
    "feature_distillation_loss",
    "gaussian_kernel_matrix",
    "generator_loss",
    "gradient_reversal",
    "hinge_ranking_loss",
    "l2_penalty",
    "l2sp_penalty",
    "mean_over_pairs",
    "minimum_class_confusion",
    "mmd_linear",
    "mmd_multi_kernel",
    "mmd_multi_layer",
    "moment_distance",
    "multi_domain_adversarial_loss",
    "multilinear_map",
    "open_set_boundary_loss",
    "pada_class_weights",
    "scale_invariant_mse",
    "soft_label_loss",
    "soft_maximum",
]
