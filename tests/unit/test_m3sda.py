"""M3SDA (Peng et al. 2019): its moment distance ``MD²`` against hand computations and its defining properties, and the
method's transfer term on pooled and single sources."""

from __future__ import annotations

import math

import pytest
import torch

from tlrun.losses import moment_distance
from tlrun.methods.m3sda import M3SDA


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_moment_distance_of_two_sources_by_hand():
    # Means 1, 1 and 3; second moments E(x²) 2, 1 and 9.
    first, second, target = t([[0.0], [2.0]]), t([[1.0], [1.0]]), t([[3.0], [3.0]])
    k1 = (2.0 + 2.0) / 2 + 0.0  # sources to target, then the one pair of sources
    k2 = (7.0 + 8.0) / 2 + 1.0
    assert moment_distance([first, second], target).item() == pytest.approx(k1 + k2)
    assert moment_distance([first, second], target, moments=1).item() == pytest.approx(k1)


def test_one_source_is_its_distance_to_the_target_with_euclidean_norms_over_features():
    source, target = t([[0.0, 0.0], [2.0, 0.0]]), t([[3.0, 4.0], [3.0, 4.0]])
    # E(x) = (1, 0) vs (3, 4); E(x²) = (2, 0) vs (9, 16).
    assert moment_distance([source], target).item() == pytest.approx(math.sqrt(20) + math.sqrt(49 + 256))


def test_moment_distance_is_zero_for_identical_domains_and_symmetric_in_the_sources():
    generator = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(16, 5, generator=generator, dtype=torch.float64) for _ in range(3))
    assert moment_distance([a, a.flip(0)], a).item() == pytest.approx(0.0, abs=1e-12)
    assert moment_distance([a, b], c).item() == pytest.approx(moment_distance([b, a], c).item())


@pytest.mark.parametrize("call", [lambda x: moment_distance([], x), lambda x: moment_distance([x], x, moments=0),
                                  lambda x: moment_distance([x[:, :2]], x)])
def test_moment_distance_refuses_no_source_no_moment_and_other_feature_sizes(call):
    with pytest.raises(ValueError):
        call(torch.zeros(4, 3))


def test_gradient_steps_on_the_moment_distance_close_the_gaps_between_every_domain():
    generator = torch.Generator().manual_seed(1)
    first = (torch.randn(64, 4, generator=generator) + 2.0).requires_grad_()
    second = (torch.randn(64, 4, generator=generator) * 2.0).requires_grad_()
    target = torch.randn(64, 4, generator=generator) - 1.0

    def gaps() -> list[float]:
        return [moment_distance([first], target).item(), moment_distance([second], target).item(),
                moment_distance([first], second).item()]

    before = gaps()
    optimizer = torch.optim.SGD([first, second], lr=5.0)  # each sample gets 1/64 of the moments' gradient
    for _ in range(100):
        optimizer.zero_grad()
        moment_distance([first, second], target).backward()
        optimizer.step()
    assert all(after < 0.25 * start for after, start in zip(gaps(), before))


def test_the_transfer_term_reads_each_sources_batch_and_works_with_one_source():
    from tlrun.backbones import MLP
    from tlrun.methods.adaptation import DomainBatch

    method = M3SDA(MLP(input_shape=(3,), hidden=[4]), bottleneck_dim=0)
    assert method.reads_source_domains
    source, target = t([[0.0], [2.0], [1.0], [1.0]]), t([[3.0], [3.0]])
    unused, per_sample = torch.zeros(0), torch.zeros(4, 1)  # what the term does not read

    def batch(domains):
        return DomainBatch(per_sample, unused, per_sample, per_sample, unused, source, target, per_sample, unused,
                           source_domains=domains)

    pooled = method.transfer_loss(batch(torch.tensor([0, 0, 1, 1])))
    assert pooled.item() == pytest.approx(moment_distance([source[:2], source[2:]], target).item())
    assert method.transfer_loss(batch(None)).item() == pytest.approx(moment_distance([source], target).item())


def test_moments_below_one_are_refused():
    from tlrun.backbones import MLP

    with pytest.raises(ValueError, match="moments must be at least 1"):
        M3SDA(MLP(input_shape=(3,), hidden=[4]), moments=0)


def test_m3sda_draws_each_samples_source_domain_with_its_batches(compose):
    import numpy as np

    from tlrun.backbones import MLP
    from tlrun.config import instantiate
    from tlrun.scenarios import Labeled, TrainingData, Unlabeled

    X = np.random.default_rng(0).random((16, 3)).astype(np.float32)
    data = TrainingData(Labeled(X, np.arange(16) % 2, np.repeat([0, 1], 8)), Unlabeled(X), 2, ("a", "b"), None,
                        source_domains=("first", "second"))
    method = instantiate(compose("method=m3sda", "method.batch_size=16").method, backbone=MLP(input_shape=(3,), hidden=[4]))
    _, _, domains = next(iter(method.train_dataloaders(data)))[0]["source"]
    assert sorted(domains.tolist()) == [0] * 8 + [1] * 8


# --- the classifier pairs and M3SDA-β's step ---------------------------------------------------------------------


def test_classifier_discrepancy_by_hand_and_its_bounds():
    from tlrun.losses import classifier_discrepancy

    first = torch.log(t([[0.5, 0.5], [0.9, 0.1]]))
    second = torch.log(t([[0.5, 0.5], [0.3, 0.7]]))
    # Sample 1 agrees; sample 2 differs by 0.6 in each of the 2 classes: mean over 2 samples x 2 classes.
    assert classifier_discrepancy(first, second).item() == pytest.approx((0.6 + 0.6) / 4)
    assert classifier_discrepancy(first, first).item() == 0.0
    certain = t([[100.0, 0.0, 0.0]])
    assert classifier_discrepancy(certain, certain.roll(1, dims=1)).item() == pytest.approx(2 / 3)  # the bound 2/K
    with pytest.raises(ValueError, match="alike"):
        classifier_discrepancy(first, second[:1])


def _pairs_method(**options):
    from tlrun.backbones import MLP
    from tlrun.scenarios import Labeled, TrainingData, Unlabeled

    torch.manual_seed(0)
    method = M3SDA(MLP(input_shape=(3,), hidden=[4]), bottleneck_dim=0, **options)
    method.num_classes = 3
    method.bottleneck, method.classifier = method.build_head(3)
    X = torch.zeros(4, 3).numpy()
    method.build_extra(TrainingData(Labeled(X, [0, 1, 2, 0], [0, 0, 1, 1]), Unlabeled(X), 3, ("a", "b", "c"), None,
                                    source_domains=("first", "second")))
    method.warmup_factor = lambda: 1.0  # the warm-up reads the Trainer's progress; full strength here
    return method


def test_the_pairs_predict_by_the_sources_mean_probabilities():
    from tlrun.methods.m3sda import SourceClassifierPairs

    method = _pairs_method()
    heads = method.classifier
    assert isinstance(heads, SourceClassifierPairs) and heads.sources == 2
    features = torch.randn(5, 4)
    expected = (torch.softmax(heads.first[0](features), 1) + torch.softmax(heads.first[1](features), 1)) / 2
    torch.testing.assert_close(torch.softmax(heads(features), 1), expected)


def _pair_batch(method):
    from tlrun.methods.adaptation import DomainBatch

    generator = torch.Generator().manual_seed(2)
    source = torch.randn(6, 4, generator=generator)
    target = torch.randn(8, 4, generator=generator).requires_grad_()
    labels, domains, unused = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 0, 0, 1, 1, 1]), torch.zeros(0)
    per_sample = torch.zeros(6, 1)  # what the objective does not read
    return DomainBatch(per_sample, unused, labels, per_sample, unused, source, target, per_sample, unused,
                       source_domains=domains)


def test_a_beta_batch_is_the_papers_three_steps_each_moving_its_own_networks_by_its_own_gradient(monkeypatch):
    """Step A moves the features and the classifiers, step B the classifiers alone and raises their discrepancy on the
    target, step C (``generator_steps`` times) the features alone and lowers it: M3SDA-β's (MCD's) alternation. Each
    step moves its networks by exactly ``lr`` times the gradient of its own loss (stale gradients are set beforehand:
    none may leak in)."""
    method = _pairs_method(discrepancy_weight=1.0, transfer_weight=0.3, generator_steps=2)
    assert not method.automatic_optimization and method.optimizer_steps_per_batch == 4
    extractor, heads = list(method.backbone.parameters()), list(method.classifier.parameters())
    lr = 0.05
    optimizer = torch.optim.SGD(extractor + heads, lr=lr)
    monkeypatch.setattr(method, "optimizers", lambda: optimizer)
    monkeypatch.setattr(method, "lr_schedulers", lambda: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0))
    monkeypatch.setattr(method, "manual_backward", lambda loss: loss.backward())
    generator = torch.Generator().manual_seed(4)
    source, target = torch.randn(6, 3, generator=generator), torch.randn(8, 3, generator=generator) + 1.0
    labels, domains = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 0, 0, 1, 1, 1])
    for parameter in extractor + heads:
        parameter.grad = torch.ones_like(parameter)  # stale

    def discrepancy() -> float:
        with torch.no_grad():
            return method.pairs_discrepancy(method.features(target)).item()

    steps, descend = [], method.descend

    def watched(loss, fixed=()):
        fixed_ids = {id(parameter) for parameter in fixed}
        before, start = [parameter.detach().clone() for parameter in extractor + heads], discrepancy()
        own = torch.autograd.grad(loss, extractor + heads, retain_graph=True, allow_unused=True)
        descend(loss, fixed)
        for parameter, old, gradient in zip(extractor + heads, before, own):
            expected = old if id(parameter) in fixed_ids or gradient is None else old - lr * gradient
            torch.testing.assert_close(parameter.detach(), expected)
        moved = [not torch.equal(old, new) for old, new in zip(before, extractor + heads)]
        steps.append((any(moved[:len(extractor)]), any(moved[len(extractor):]), start, discrepancy()))

    monkeypatch.setattr(method, "descend", watched)
    method._epoch_sums = {}
    method.training_step({"source": (source, labels, domains), "target": target}, 0)
    both, classifiers_only, features_only = (True, True), (False, True), (True, False)
    assert [step[:2] for step in steps] == [both, classifiers_only, features_only, features_only]
    assert steps[1][3] > steps[1][2]  # B: the pairs disagree more on the target
    assert all(after < start for *_, start, after in steps[2:])  # C: the features make them agree
    assert {"classification_loss", "transfer_loss", "classifier_discrepancy"} <= set(method._epoch_sums)


def test_a_step_passes_the_parameters_it_holds_fixed_by_despite_their_momentum_and_weight_decay():
    method = _pairs_method(discrepancy_weight=1.0)
    heads = list(method.classifier.parameters())
    optimizer = torch.optim.SGD(method.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    method.optimizers, method.manual_backward = (lambda: optimizer), (lambda loss: loss.backward())
    target = torch.randn(5, 3)
    method.descend(method.pairs_discrepancy(method.features(target)))  # every parameter moves, gains momentum
    assert all(optimizer.state[parameter]["momentum_buffer"].abs().sum() > 0 for parameter in heads)
    kept = [parameter.detach().clone() for parameter in heads]
    method.descend(method.pairs_discrepancy(method.features(target)), fixed=heads)
    assert all(torch.equal(old, new) for old, new in zip(kept, heads))


def test_a_beta_fit_steps_the_schedule_once_per_batch_and_the_warmup_counts_batches(compose, monkeypatch):
    """Through Lightning: one optimizer over every parameter (each group at its rate), every batch takes
    ``2 + generator_steps`` optimizer steps and one step of the schedule, and the warm-up's progress counts batches
    (0, 1/n, 2/n, …)."""
    import numpy as np

    from tlrun.backbones import MLP
    from tlrun.config import instantiate
    from tlrun.methods.base import NullReporter, RunContext
    from tlrun.scenarios import Labeled, TrainingData, Unlabeled

    X = np.random.default_rng(0).random((16, 3)).astype(np.float32)
    data = TrainingData(Labeled(X, np.arange(16) % 2, np.repeat([0, 1], 8)), Unlabeled(X + 1), 2, ("a", "b"), None,
                        source_domains=("first", "second"))
    method = instantiate(compose("method=m3sda", "method.epochs=2", "method.batch_size=4", "method.bottleneck_dim=4",
                                 "method.generator_steps=2", "method.backbone_lr_mult=0.5").method,
                         backbone=MLP(input_shape=(3,), hidden=[4]))
    progress = []
    step = type(method).training_step
    monkeypatch.setattr(type(method), "training_step",
                        lambda self, batch, index: (progress.append(self.progress()), step(self, batch, index))[1])
    method.fit(data, RunContext(reporter=NullReporter(), device="cpu", seed=0, diagnostics=False,
                                trainer={"enable_progress_bar": False, "enable_model_summary": False}))
    batches = method.trainer.estimated_stepping_batches  # the training batches of both epochs
    assert batches == 2 * method.trainer.num_training_batches > 0
    optimizer = method.optimizers().optimizer
    held = [id(parameter) for group in optimizer.param_groups for parameter in group["params"]]
    assert sorted(held) == sorted(id(parameter) for parameter in method.parameters() if parameter.requires_grad)
    assert {group["name"]: group["initial_lr"] for group in optimizer.param_groups} == {"head": 0.01, "backbone": 0.005}
    assert method.trainer.global_step == batches * 4
    assert method.lr_schedulers().last_epoch == batches
    assert progress == pytest.approx([index / batches for index in range(batches)])


def test_without_beta_the_pairs_learn_their_sources_and_the_target_features_get_no_discrepancy_gradient():
    method = _pairs_method(discrepancy_weight=0.0, transfer_weight=0.0)
    batch = _pair_batch(method)
    loss = method.objective(batch, torch.zeros(()), weight=0.0)
    heads, parts = method.classifier, [slice(0, 3), slice(3, 6)]
    expected = torch.stack([
        torch.nn.functional.cross_entropy(heads.pair(batch.source_features[rows], i)[0], batch.source_labels[rows])
        + torch.nn.functional.cross_entropy(heads.pair(batch.source_features[rows], i)[1], batch.source_labels[rows])
        for i, rows in enumerate(parts)]).mean()
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert not batch.target_features.grad.any()  # λ = 0 and β = 0: nothing pulls on the target features


def test_a_beta_step_without_classifier_pairs_is_refused():
    from tlrun.backbones import MLP

    with pytest.raises(ValueError, match="classifiers=per_source"):
        M3SDA(MLP(input_shape=(3,), hidden=[4]), classifiers="shared", discrepancy_weight=1.0)
    with pytest.raises(ValueError, match="shared or per_source"):
        M3SDA(MLP(input_shape=(3,), hidden=[4]), classifiers="each")


def test_each_sources_samples_train_that_sources_pair_whatever_else_the_batch_holds():
    """Heads are chosen by the domain index, not by the order of the parts: a batch of source 1 alone trains pair 1."""
    from tlrun.methods.adaptation import DomainBatch

    method = _pairs_method(discrepancy_weight=0.0, transfer_weight=0.0)
    generator = torch.Generator().manual_seed(3)
    source, target = torch.randn(4, 4, generator=generator), torch.randn(4, 4, generator=generator)
    per_sample, unused = torch.zeros(4, 1), torch.zeros(0)
    batch = DomainBatch(per_sample, unused, torch.tensor([0, 1, 2, 0]), per_sample, unused, source, target,
                        per_sample, unused, source_domains=torch.tensor([1, 1, 1, 1]))
    method.objective(batch, torch.zeros(()), weight=0.0).backward()
    heads = method.classifier
    assert heads.first[0].weight.grad is None and heads.second[0].weight.grad is None
    assert heads.first[1].weight.grad.abs().sum() > 0 and heads.second[1].weight.grad.abs().sum() > 0


def test_in_semi_da_the_labeled_targets_cross_entropy_joins_the_recorded_classification_term():
    method = _pairs_method(discrepancy_weight=0.0, transfer_weight=0.0)
    batch = _pair_batch(method)
    labeled_logits, labeled = torch.randn(3, 3), torch.tensor([2, 0, 1])
    batch.labeled_target_logits, batch.labeled_target_labels = labeled_logits, labeled
    method._step_terms = {}
    with_labeled = method.objective(batch, torch.zeros(()), weight=0.0)
    recorded_with = method._step_terms["classification_loss"].item()
    batch.labeled_target_logits = batch.labeled_target_labels = None
    without = method.objective(batch, torch.zeros(()), weight=0.0)
    recorded_without = method._step_terms["classification_loss"].item()
    added = torch.nn.functional.cross_entropy(labeled_logits, labeled).item()
    assert with_labeled.item() == pytest.approx(without.item() + added)
    assert recorded_with == pytest.approx(recorded_without + added)  # the logged term is the one minimised


@pytest.mark.parametrize("setting", ["+trainer.gradient_clip_val=1", "+trainer.accumulate_grad_batches=2",
                                     "+trainer.max_steps=14"])
def test_trainer_settings_of_automatic_optimisation_are_refused_before_a_run_with_beta(compose, setting):
    from tlrun.errors import TlrunError
    from tlrun.runner.preflight import preflight

    with pytest.raises(TlrunError, match=rf"trainer\.{setting.split('.')[1].split('=')[0]}=.*discrepancy_weight=0"):
        preflight(compose("method=m3sda", setting))
    preflight(compose("method=m3sda", setting, "method.discrepancy_weight=0"))  # Lightning's steps: allowed
    preflight(compose("method=dann", setting))
