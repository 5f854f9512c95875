"""The CDAN, MCC, Simultaneous Deep Transfer, DSN and PixelDA building blocks of tlrun.losses against closed forms
(numpy, by hand) and their defining properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tlrun.losses import (
    DomainDiscriminator,
    GradientReversal,
    PixelDiscriminator,
    PixelGenerator,
    RandomizedMultilinearMap,
    SoftLabelBank,
    class_soft_labels,
    conditional_adversarial_loss,
    difference_loss,
    discriminator_loss,
    domain_adversarial_loss,
    domain_confusion_loss,
    entropy,
    entropy_weights,
    generator_loss,
    minimum_class_confusion,
    multilinear_map,
    scale_invariant_mse,
    soft_label_loss,
)


def sample(*shape: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64) + shift


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def softplus(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(x))


def np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(p + 1e-5)).sum(axis=1)


class FixedLogit(nn.Module):
    """A stand-in discriminator with a fixed weight vector: ``D(h) = hᵀ w``, one logit per sample."""

    def __init__(self, w: list[float]) -> None:
        super().__init__()
        self.register_buffer("w", t(w))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.w


# --- entropy and multilinear maps -----------------------------------------------------------------------------


def test_entropy_and_its_weights():
    p = t([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])
    np.testing.assert_allclose(entropy(p).numpy(), np_entropy(p.numpy()), rtol=1e-12)
    assert entropy(p)[0].item() == pytest.approx(math.log(2), abs=1e-4)
    assert entropy(p)[1].item() == pytest.approx(0.0, abs=1e-4)
    q = p.clone().requires_grad_()
    w = entropy_weights(q)
    assert not w.requires_grad
    np.testing.assert_allclose(w.numpy(), 1 + np.exp(-np_entropy(p.numpy())), rtol=1e-12)
    assert w[1] > w[2] > w[0]  # the more confident, the heavier


def test_multilinear_map_is_the_flattened_outer_product():
    f = t([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    g = t([[0.25, 0.75], [1.0, 0.0]])
    h = multilinear_map(f, g)
    assert h.shape == (2, 6)
    np.testing.assert_array_equal(h[0].numpy(), [0.25, 0.75, 0.5, 1.5, 0.75, 2.25])
    np.testing.assert_array_equal(h[1].numpy(), [0.5, 0.0, -1.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="differ in samples"):
        multilinear_map(f, g[:1])


def test_randomized_multilinear_map_is_reproducible_with_fixed_buffers():
    torch.manual_seed(0)
    first = RandomizedMultilinearMap(3, 2, output_dim=16)
    torch.manual_seed(0)
    second = RandomizedMultilinearMap(3, 2, output_dim=16)
    assert first.output_dim == 16
    assert list(first.parameters()) == []
    assert {name for name, _ in first.named_buffers()} == {"R_f", "R_g"}
    assert first.R_f.shape == (16, 3) and first.R_g.shape == (16, 2)
    assert set(first.state_dict()) == {"R_f", "R_g"}
    torch.testing.assert_close(first.R_f, second.R_f, rtol=0, atol=0)
    torch.testing.assert_close(first.R_g, second.R_g, rtol=0, atol=0)

    f, g = sample(4, 3, seed=1), torch.softmax(sample(4, 2, seed=2), dim=1)
    h = first.double()(f, g)
    assert h.shape == (4, 16)
    expected = (f.numpy() @ first.R_f.numpy().T) * (g.numpy() @ first.R_g.numpy().T) / 4.0
    np.testing.assert_allclose(h.numpy(), expected, rtol=1e-12)
    torch.testing.assert_close(h, second.double()(f, g), rtol=0, atol=0)


def test_randomized_multilinear_map_preserves_inner_products_in_expectation():
    torch.manual_seed(0)
    mapping = RandomizedMultilinearMap(3, 2, output_dim=100_000).double()
    f, g = t([[1.0, -0.5, 2.0], [0.3, 1.0, -1.0]]), t([[0.8, 0.2], [0.4, 0.6]])
    h = mapping(f, g)
    exact = multilinear_map(f, g)
    torch.testing.assert_close(h @ h.T, exact @ exact.T, rtol=0.05, atol=0.05)


# --- CDAN -----------------------------------------------------------------------------------------------------

F_S, F_T = [[1.0, 2.0], [0.5, -1.0]], [[-1.0, 0.5], [2.0, 1.0]]
G_S, G_T = [[0.9, 0.1], [0.3, 0.7]], [[0.5, 0.5], [0.2, 0.8]]
W = [0.3, -0.2, 0.5, 0.1]


def cdan_by_hand(entropy_conditioning: bool) -> float:
    def logits(f, g):
        h = np.stack([np.outer(fi, gi).ravel() for fi, gi in zip(np.array(f), np.array(g))])
        return h @ np.array(W)

    bce_s = softplus(-logits(F_S, G_S))  # −log σ(z), label 1
    bce_t = softplus(logits(F_T, G_T))  # −log(1 − σ(z)), label 0
    if entropy_conditioning:
        w_s, w_t = 1 + np.exp(-np_entropy(np.array(G_S))), 1 + np.exp(-np_entropy(np.array(G_T)))
    else:
        w_s, w_t = np.ones(2), np.ones(2)
    return 0.5 * (w_s / w_s.sum() * bce_s).sum() + 0.5 * (w_t / w_t.sum() * bce_t).sum()


@pytest.mark.parametrize("entropy_conditioning", [True, False], ids=["CDAN+E", "CDAN"])
def test_conditional_adversarial_loss_matches_a_hand_computation(entropy_conditioning):
    value = conditional_adversarial_loss(
        FixedLogit(W), t(F_S), t(F_T), t(G_S), t(G_T), entropy_conditioning=entropy_conditioning
    )
    assert value.item() == pytest.approx(cdan_by_hand(entropy_conditioning), rel=1e-12)


def test_conditional_adversarial_loss_without_entropy_is_the_dann_loss_on_the_map():
    torch.manual_seed(0)
    discriminator = DomainDiscriminator(6, hidden=8).double().eval()
    f_s, f_t = sample(5, 3, seed=0), sample(5, 3, seed=1, shift=1.0)
    g_s, g_t = torch.softmax(sample(5, 2, seed=2), 1), torch.softmax(sample(5, 2, seed=3), 1)
    value = conditional_adversarial_loss(discriminator, f_s, f_t, g_s, g_t, entropy_conditioning=False)
    expected = domain_adversarial_loss(discriminator, multilinear_map(f_s, g_s), multilinear_map(f_t, g_t))
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)

    # unequal batches: each domain weighs one half
    D = FixedLogit([0.1, -0.3, 0.2, 0.4, -0.1, 0.05])
    value = conditional_adversarial_loss(D, f_s, f_t[:2], g_s, g_t[:2], entropy_conditioning=False)
    z_s, z_t = D(multilinear_map(f_s, g_s)).numpy(), D(multilinear_map(f_t[:2], g_t[:2])).numpy()
    assert value.item() == pytest.approx(0.5 * softplus(-z_s).mean() + 0.5 * softplus(z_t).mean(), rel=1e-12)


def test_conditional_adversarial_loss_with_a_randomized_map_and_gradient_reversal():
    torch.manual_seed(0)
    mapping = RandomizedMultilinearMap(3, 2, output_dim=8).double()
    discriminator = DomainDiscriminator(8, hidden=8).double()

    def gradients(grl):
        f_s, f_t = sample(4, 3, seed=0).requires_grad_(), sample(4, 3, seed=1, shift=1.0).requires_grad_()
        g_s = torch.softmax(sample(4, 2, seed=2), 1).requires_grad_()
        g_t = torch.softmax(sample(4, 2, seed=3), 1).requires_grad_()
        discriminator.zero_grad()
        conditional_adversarial_loss(discriminator, f_s, f_t, g_s, g_t, grl=grl, mapping=mapping).backward()
        assert g_s.grad is None and g_t.grad is None  # the predictions are detached
        return f_s.grad, f_t.grad, discriminator.net[0].weight.grad.clone()

    plain_s, plain_t, plain_w = gradients(None)
    reversed_s, reversed_t, reversed_w = gradients(GradientReversal(0.5))
    assert plain_s.abs().sum() > 0 and plain_t.abs().sum() > 0
    torch.testing.assert_close(reversed_s, -0.5 * plain_s)
    torch.testing.assert_close(reversed_t, -0.5 * plain_t)
    torch.testing.assert_close(reversed_w, plain_w)


def test_conditional_adversarial_loss_rejects_bad_inputs():
    f, g = torch.zeros(2, 3), torch.full((2, 2), 0.5)
    with pytest.raises(ValueError, match="one logit per sample"):
        conditional_adversarial_loss(nn.Linear(6, 2), f, f, g, g)
    with pytest.raises(ValueError, match="differ in samples"):
        conditional_adversarial_loss(nn.Linear(6, 1), f, f, g[:1], g[:1])
    with pytest.raises(ValueError, match="differ in size"):
        conditional_adversarial_loss(nn.Linear(6, 1), f, torch.zeros(2, 4), g, g)
    with pytest.raises(ValueError, match="differ in classes"):
        conditional_adversarial_loss(nn.Linear(6, 1), f, f, g, torch.full((2, 3), 1 / 3))


# --- MCC ------------------------------------------------------------------------------------------------------


def test_minimum_class_confusion_matches_a_hand_computation():
    Z = sample(5, 3, seed=0) * 2
    T = 2.5
    Y = np_softmax(Z.numpy() / T)
    w = 1 + np.exp(-np_entropy(Y))
    W_diag = len(Y) * w / w.sum()
    C = Y.T @ np.diag(W_diag) @ Y
    C = C / C.sum(axis=1, keepdims=True)
    expected = (np.abs(C).sum() - np.trace(np.abs(C))) / 3
    assert minimum_class_confusion(Z, temperature=T).item() == pytest.approx(expected, rel=1e-12)


def test_minimum_class_confusion_is_zero_for_confident_distinct_predictions_and_maximal_for_uniform():
    confident = 50.0 * torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 2]]
    assert minimum_class_confusion(confident).item() == pytest.approx(0.0, abs=1e-6)
    # uniform predictions: every C̃_jj' = 1/C, so L = (C − 1)/C
    assert minimum_class_confusion(torch.zeros(4, 3, dtype=torch.float64)).item() == pytest.approx(2 / 3, rel=1e-12)
    with pytest.raises(ValueError, match="temperature"):
        minimum_class_confusion(confident, temperature=0.0)


# --- Simultaneous Deep Transfer -------------------------------------------------------------------------------


def test_domain_confusion_loss_is_minimal_at_zero_with_value_log_two():
    assert domain_confusion_loss(torch.zeros(4, dtype=torch.float64)).item() == pytest.approx(math.log(2), rel=1e-15)
    z = sample(6, seed=0).requires_grad_()
    value = domain_confusion_loss(z)
    sigma = 1 / (1 + np.exp(-z.detach().numpy()))
    expected = -(0.5 * np.log(sigma) + 0.5 * np.log(1 - sigma))
    assert value.item() == pytest.approx(expected.mean(), rel=1e-12)
    assert value.item() > math.log(2)
    value.backward()
    torch.testing.assert_close(z.grad, (torch.sigmoid(z.detach()) - 0.5) / 6)  # pulls every logit towards 0
    assert math.isfinite(domain_confusion_loss(t([1000.0, -1000.0])).item())
    with pytest.raises(ValueError, match="one logit per sample"):
        domain_confusion_loss(torch.zeros(4, 1))


def test_class_soft_labels_are_per_class_means_of_the_softened_predictions():
    logits = sample(6, 3, seed=0).requires_grad_()
    labels = torch.tensor([0, 2, 0, 2, 2, 0])
    soft, present = class_soft_labels(logits, labels, 3, temperature=2.0)
    assert not soft.requires_grad
    np.testing.assert_array_equal(present.numpy(), [True, False, True])
    p = np_softmax(logits.detach().numpy() / 2.0)
    np.testing.assert_allclose(soft[0].numpy(), p[[0, 2, 5]].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(soft[2].numpy(), p[[1, 3, 4]].mean(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(soft[1].numpy(), np.zeros(3))
    np.testing.assert_allclose(soft[present].sum(dim=1).numpy(), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="class indices"):
        class_soft_labels(logits, torch.tensor([0, 3, 0, 2, 2, 0]), 3)


def test_soft_label_loss_matches_a_hand_computation_and_vanishes_in_gradient_at_the_soft_labels():
    soft = t([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    labels = torch.tensor([2, 0, 1, 2])
    logits = sample(4, 3, seed=0).requires_grad_()
    value = soft_label_loss(logits, labels, soft, temperature=2.0)
    log_p = np.log(np_softmax(logits.detach().numpy() / 2.0))
    expected = -(soft.numpy()[labels.numpy()] * log_p).sum(axis=1).mean()
    assert value.item() == pytest.approx(expected, rel=1e-12)
    value.backward()
    assert logits.grad.abs().sum() > 0
    # the cross-entropy is minimal where softmax(z/τ) equals the soft label: z = τ log l
    at_soft = (2.0 * torch.log(soft[labels])).requires_grad_()
    soft_label_loss(at_soft, labels, soft, temperature=2.0).backward()
    torch.testing.assert_close(at_soft.grad, torch.zeros_like(at_soft), rtol=0, atol=1e-12)


def test_soft_label_bank_is_an_exponential_moving_average_from_uniform():
    bank = SoftLabelBank(3, temperature=2.0, momentum=0.9).double()
    assert list(bank.parameters()) == [] and set(bank.state_dict()) == {"soft_labels"}
    np.testing.assert_allclose(bank.soft_labels.numpy(), np.full((3, 3), 1 / 3), rtol=1e-7)
    uniform = bank.soft_labels[0].clone().numpy()
    logits, labels = sample(4, 3, seed=0), torch.tensor([0, 0, 2, 2])
    batch, _ = class_soft_labels(logits, labels, 3)
    bank.update(logits, labels)
    np.testing.assert_allclose(bank.soft_labels[0].numpy(), 0.9 * uniform + 0.1 * batch[0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(bank.soft_labels[2].numpy(), 0.9 * uniform + 0.1 * batch[2].numpy(), rtol=1e-12)
    np.testing.assert_array_equal(bank.soft_labels[1].numpy(), uniform)  # absent: unchanged
    before = bank.soft_labels.clone()
    logits2, labels2 = sample(3, 3, seed=1), torch.tensor([1, 1, 2])
    batch2, _ = class_soft_labels(logits2, labels2, 3)
    bank.update(logits2, labels2)
    np.testing.assert_allclose(bank.soft_labels[1].numpy(), 0.9 * uniform + 0.1 * batch2[1].numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        bank.soft_labels[2].numpy(), 0.9 * before[2].numpy() + 0.1 * batch2[2].numpy(), rtol=1e-12
    )
    np.testing.assert_array_equal(bank.soft_labels[0].numpy(), before[0].numpy())
    np.testing.assert_allclose(bank.soft_labels.sum(dim=1).numpy(), 1.0, rtol=1e-7)
    assert bank(logits2, labels2).item() == pytest.approx(
        soft_label_loss(logits2, labels2, bank.soft_labels).item(), rel=1e-15
    )
    with pytest.raises(ValueError, match="momentum"):
        SoftLabelBank(3, momentum=1.0)


# --- Domain Separation Networks -------------------------------------------------------------------------------


def test_difference_loss_is_zero_for_orthogonal_codes_and_positive_otherwise():
    shared = t([[1.0, 2.0], [3.0, -1.0], [0.0, 0.0], [0.0, 0.0]])
    private = t([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 2.0], [-1.0, 3.0, 0.0]])
    assert difference_loss(shared, private).item() == 0.0
    shared, private = sample(6, 2, seed=0), sample(6, 3, seed=1)
    H_c = shared.numpy() / (np.linalg.norm(shared.numpy(), axis=1, keepdims=True) + 1e-6)
    H_p = private.numpy() / (np.linalg.norm(private.numpy(), axis=1, keepdims=True) + 1e-6)
    expected = np.sum((H_c.T @ H_p) ** 2)
    value = difference_loss(shared, private)
    assert value.item() > 0
    assert value.item() == pytest.approx(expected, rel=1e-12)
    # row normalisation: rescaling a sample's code changes nothing (up to eps)
    scale = t([[2.0], [0.5], [10.0], [1.0], [3.0], [0.1]])
    assert difference_loss(shared * scale, private).item() == pytest.approx(value.item(), rel=1e-5)
    with pytest.raises(ValueError, match="differ in samples"):
        difference_loss(shared, private[:5])


def test_centred_averaged_difference_loss_as_dsn_uses_it():
    """center=True, reduction="mean" (DSN's setting): 0 for codes whose centred columns are orthogonal, whatever
    their offsets (the uncentred loss is not), and the mean of the squared correlations otherwise."""
    hadamard = t([[1.0, 1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]])  # columns sum to 0
    shared, private = hadamard[:, :1] + 5.0, hadamard[:, 1:] - 2.0  # orthogonal once centred, equal row norms
    assert difference_loss(shared, private, center=True, reduction="mean").item() == pytest.approx(0.0, abs=1e-12)
    assert difference_loss(shared, private).item() > 0.1
    shared, private = sample(6, 2, seed=0), sample(6, 3, seed=1)
    centred_c, centred_p = (x.numpy() - x.numpy().mean(axis=0) for x in (shared, private))
    H_c = centred_c / (np.linalg.norm(centred_c, axis=1, keepdims=True) + 1e-6)
    H_p = centred_p / (np.linalg.norm(centred_p, axis=1, keepdims=True) + 1e-6)
    expected = np.mean((H_c.T @ H_p) ** 2)
    assert difference_loss(shared, private, center=True, reduction="mean").item() == pytest.approx(expected, rel=1e-12)


def test_scale_invariant_mse_is_the_variance_of_the_error_and_ignores_a_constant_shift():
    target, reconstruction = sample(3, 1, 4, 4, seed=0), sample(3, 1, 4, 4, seed=1)
    d = (target - reconstruction).reshape(3, -1).numpy()
    value = scale_invariant_mse(reconstruction, target)
    assert value.item() == pytest.approx(np.var(d, axis=1).mean(), rel=1e-12)
    shift = t([1.5, -3.0, 0.25]).reshape(3, 1, 1, 1)
    assert scale_invariant_mse(reconstruction + shift, target).item() == pytest.approx(value.item(), rel=1e-10)
    assert scale_invariant_mse(target + shift, target).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="differ in shape"):
        scale_invariant_mse(reconstruction, target[:2])


# --- PixelDA --------------------------------------------------------------------------------------------------


def test_pixel_generator_keeps_the_shape_stays_in_its_range_and_learns_from_a_downstream_loss():
    torch.manual_seed(0)
    generator = PixelGenerator((1, 8, 8), noise_dim=5, channels=8, blocks=2)
    discriminator = PixelDiscriminator((1, 8, 8), channels=8)
    assert generator.noise_dim == 5
    images, noise = torch.rand(4, 1, 8, 8) * 2 - 1, torch.rand(4, 5) * 2 - 1
    fake = generator(images, noise)
    assert fake.shape == images.shape
    assert fake.abs().max().item() <= 1.0  # the default range [−1, 1] (tests/test_pixelda.py: any range)
    flat = generator(images.reshape(4, -1), noise)
    assert flat.shape == (4, 64)
    torch.testing.assert_close(flat, fake.reshape(4, -1))

    generator_loss(discriminator(fake)).backward()
    for name, parameter in generator.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="noise"):
        generator(images, torch.zeros(4, 3))


@pytest.mark.parametrize(
    ("shape", "convolutions"), [((1, 8, 8), 1), ((1, 28, 28), 3), ((3, 32, 32), 3), ((3, 224, 224), 6)]
)
def test_pixel_discriminator_gives_one_logit_per_image(shape, convolutions):
    torch.manual_seed(0)
    discriminator = PixelDiscriminator(shape, channels=4)
    assert sum(isinstance(m, nn.Conv2d) for m in discriminator.modules()) == convolutions
    images = torch.rand(2, *shape)
    logits = discriminator(images)
    assert logits.shape == (2,)
    assert max(discriminator.features(images).shape[2:]) <= 4
    torch.testing.assert_close(discriminator(images.reshape(2, -1)), logits)
    with pytest.raises(ValueError, match="expected images"):
        discriminator(torch.rand(2, shape[0] + 1, *shape[1:]))


def test_pixel_gan_losses_match_the_binary_cross_entropy_and_the_generator_loss_does_not_saturate():
    real, fake = sample(4, seed=0), sample(3, seed=1, shift=-1.0)
    expected = 0.5 * (softplus(-real.numpy()).mean() + softplus(fake.numpy()).mean())
    assert discriminator_loss(real, fake).item() == pytest.approx(expected, rel=1e-12)
    assert generator_loss(fake).item() == pytest.approx(softplus(-fake.numpy()).mean(), rel=1e-12)
    # a confident discriminator (very negative fake logits) still sends the generator a full gradient
    z = t([-20.0, -30.0]).requires_grad_()
    generator_loss(z).backward()
    torch.testing.assert_close(z.grad, torch.full_like(z, -0.5), rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="one logit per sample"):
        discriminator_loss(real[:, None], fake)


# --- gradients into the inputs --------------------------------------------------------------------------------


def cdan(x, y):
    torch.manual_seed(0)
    D = DomainDiscriminator(6, hidden=4).double()
    g = torch.softmax(sample(4, 2, seed=5), 1)
    return conditional_adversarial_loss(D, x, y, g, g)


GRADIENT_CASES = {
    "cdan": (cdan, [(4, 3), (4, 3)]),
    "mcc": (minimum_class_confusion, [(5, 3)]),
    "domain_confusion": (domain_confusion_loss, [(5,)]),
    "soft_label": (lambda z: soft_label_loss(z, torch.tensor([0, 1, 2]), torch.full((3, 3), 1 / 3)), [(3, 3)]),
    "difference": (difference_loss, [(5, 2), (5, 3)]),
    "si_mse": (scale_invariant_mse, [(3, 2, 4), (3, 2, 4)]),
    "pixel_discriminator": (discriminator_loss, [(4,), (4,)]),
    "pixel_generator": (generator_loss, [(4,)]),
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_every_loss_sends_a_gradient_to_its_inputs(case):
    loss, shapes = GRADIENT_CASES[case]
    inputs = [sample(*shape, seed=i).requires_grad_() for i, shape in enumerate(shapes)]
    value = loss(*inputs)
    assert value.dim() == 0 and math.isfinite(value.item())
    value.backward()
    for x in inputs:
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
