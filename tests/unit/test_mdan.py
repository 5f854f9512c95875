"""MDAN (Zhao et al. 2018): the smooth maximum over sources by hand and at its limits, each source's discriminator
reading only its own source's samples and the target's, and one source giving DANN's loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tlrun.backbones import MLP
from tlrun.losses import domain_adversarial_loss, soft_maximum
from tlrun.methods.adaptation import DomainBatch
from tlrun.methods.dann import DANN
from tlrun.methods.mdan import MDAN
from tlrun.scenarios import Labeled, TrainingData, Unlabeled


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_soft_maximum_by_hand():
    # (1/2) log(e^{2·1} + e^{2·3}) = 3 + (1/2) log(1 + e^{-4})
    assert soft_maximum(t([1.0, 3.0]), 2.0).item() == pytest.approx(3.0 + 0.5 * math.log1p(math.exp(-4.0)))
    assert soft_maximum(t([0.5]), 7.0).item() == pytest.approx(0.5)  # one value: itself, at any γ


def test_soft_maximum_lies_between_the_maximum_and_the_maximum_plus_log_n_over_gamma_and_tends_to_both_ends():
    losses = t([0.2, 1.5, 0.9, 1.1])
    for gamma in (0.1, 1.0, 10.0):
        value = soft_maximum(losses, gamma).item()
        assert 1.5 <= value <= 1.5 + math.log(4) / gamma
    assert soft_maximum(losses, 1e4).item() == pytest.approx(1.5, abs=1e-3)  # γ → ∞: the hard maximum
    gamma = 1e-4  # γ → 0: the mean plus log(N)/γ, up to γ·var/2
    assert soft_maximum(losses, gamma).item() - math.log(4) / gamma == pytest.approx(losses.mean().item(), abs=1e-4)


def test_soft_maximum_weighs_each_loss_by_its_softmax():
    losses = t([0.2, 1.5, 0.9]).requires_grad_()
    soft_maximum(losses, 3.0).backward()
    assert losses.grad.tolist() == pytest.approx(torch.softmax(3.0 * losses.detach(), 0).tolist())


@pytest.mark.parametrize("losses, gamma", [(t([]), 1.0), (t([[1.0]]), 1.0), (t([1.0]), 0.0)])
def test_soft_maximum_refuses_no_loss_a_matrix_and_gamma_not_positive(losses, gamma):
    with pytest.raises(ValueError):
        soft_maximum(losses, gamma)


def built(cls: type[DANN], sources: tuple[str, ...] = (), **settings) -> DANN:
    """The method on 4 features (an MLP backbone, no bottleneck) with its discriminators built for ``sources``."""
    torch.manual_seed(0)
    network = cls(MLP(input_shape=(3,), hidden=[4]), bottleneck_dim=0, discriminator_hidden=5, **settings)
    X = np.zeros((4, 3), dtype=np.float32)
    network.build_extra(TrainingData(Labeled(X, np.arange(4) % 2), Unlabeled(X), 2, ("a", "b"), None,
                                     source_domains=sources))
    return network


def batch(domains: torch.Tensor | None) -> DomainBatch:
    """6 source samples (features, logits, labels, domains) and 5 target samples of 4 features."""
    generator = torch.Generator().manual_seed(1)
    source, target = torch.randn(6, 4, generator=generator), torch.randn(5, 4, generator=generator)
    logits, labels = torch.randn(6, 2, generator=generator), torch.tensor([0, 1, 1, 0, 1, 0])
    unused = torch.zeros(6, 1)
    return DomainBatch(unused, unused[:5], labels, unused, unused[:5], source, target, logits, torch.zeros(5, 2),
                       source_domains=domains)


def test_each_sources_discriminator_reads_only_its_sources_samples_and_the_target():
    mdan = built(MDAN, ("first", "second", "third"))
    assert mdan.reads_source_domains and len(mdan.discriminators) == 3
    seen: dict[int, torch.Tensor] = {}
    for index, discriminator in enumerate(mdan.discriminators):
        discriminator.register_forward_hook(lambda module, inputs, output, index=index: seen.update({index: inputs[0]}))
    domains = torch.tensor([2, 0, 2, 0, 0, 2])  # the second source is absent from this batch
    step = batch(domains)
    mdan.objective(step, torch.tensor(0.0), 1.0)
    assert sorted(seen) == [0, 2]
    for index in (0, 2):
        assert torch.equal(seen[index], torch.cat([step.source_features[domains == index], step.target_features]))
    parts = step.per_source()  # the domains present, in index order, each with the whole target batch
    assert [part.source_labels.tolist() for part in parts] == [[1, 0, 1], [0, 1, 0]]
    assert all(torch.equal(part.target_features, step.target_features) for part in parts)


def test_the_objective_is_the_soft_or_hard_maximum_of_each_sources_cross_entropy_plus_mu_times_its_domain_loss():
    domains = torch.tensor([1, 0, 1, 0, 0, 1])
    step = batch(domains)
    for aggregation, combine in (("soft", lambda losses: soft_maximum(losses, 10.0)), ("hard", torch.max)):
        mdan = built(MDAN, ("first", "second"), aggregation=aggregation)
        expected = torch.stack([
            torch.nn.functional.cross_entropy(step.source_logits[domains == i], step.source_labels[domains == i])
            + 0.5 * domain_adversarial_loss(mdan.discriminators[i], step.source_features[domains == i],
                                            step.target_features)
            for i in (0, 1)
        ])
        assert mdan.objective(step, torch.tensor(0.0), 0.5).item() == pytest.approx(combine(expected).item(), rel=1e-6)


@pytest.mark.parametrize("domains", [None, torch.zeros(6, dtype=torch.long)], ids=["one source", "pooled, one present"])
def test_with_one_source_the_loss_and_its_gradients_are_danns(domains):
    dann, mdan = built(DANN), built(MDAN, transfer_weight=0.3)
    mdan.discriminators[0].load_state_dict(dann.discriminator.state_dict())
    mdan.reversal.coefficient = dann.reversal.coefficient = 0.7
    losses = []
    for network in (dann, mdan):
        step = batch(domains)
        step.source_features.requires_grad_()
        classification = torch.nn.functional.cross_entropy(step.source_logits, step.source_labels)
        loss = network.objective(step, classification, 0.3)
        loss.backward()
        losses.append((loss.item(), step.source_features.grad))
    (dann_loss, dann_gradient), (mdan_loss, mdan_gradient) = losses
    assert mdan_loss == pytest.approx(dann_loss, rel=1e-6)
    assert torch.allclose(mdan_gradient, dann_gradient)


@pytest.mark.parametrize("settings, message", [({"gamma": 0}, "gamma"), ({"aggregation": "mean"}, "aggregation")])
def test_a_gamma_not_positive_and_an_unknown_aggregation_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        MDAN(MLP(input_shape=(3,), hidden=[4]), **settings)
