"""Fine-tuning by architecture: multi-task learning (shared stages, a head per task, fixed or uncertainty
weighting) and progressive networks (a frozen source column, a new column fed by lateral adapters)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tlrun.backbones import LeNet
from tlrun.backbones.base import Backbone
from tlrun.data.digits import Digits
from tlrun.methods.base import NullReporter, RunContext
from tlrun.methods.multitask import MultiTask
from tlrun.methods.progressive import Lateral, Progressive
from tlrun.scenarios import split

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAINER = dict(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)
# lr_schedule none: the constant lr these tests were written with (the recipe's default anneals it: inv).
QUICK = dict(epochs=2, iterations_per_epoch=3, pretrain_epochs=1, report_every=0, optimizer="adam", lr=1e-3,
             bottleneck_dim=0, lr_schedule="none")


class TinyBN(Backbone):
    """Two stages, a 4-D one with batch norm (buffers that must not move in a frozen column) and a 2-D one."""

    def __init__(self) -> None:
        super().__init__((1, 8, 8))
        self.conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * 64, 16), nn.ReLU())
        self.out_features = 16

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [("conv", self.conv), ("fc", self.fc)]


@pytest.fixture(scope="module")
def digits():
    source, target = Digits(source="original", target="thick").load_pair()
    return split(source, target, "finetune", seed=0, source_val_fraction=0.2, target_labels_per_class=5)


def _lenet(small: bool = True) -> LeNet:
    torch.manual_seed(0)
    return LeNet(input_shape=(1, 8, 8), channels=[4, 8], features=16) if small else LeNet(input_shape=(1, 8, 8))


def _fit(method, data):
    method.fit(data, RunContext(reporter=NullReporter(), trainer=dict(TRAINER)))
    return method


def _built(method, data):
    """The method's networks as ``fit`` builds them, without training."""
    method._image_shape, method.num_classes = data.image_shape, data.num_classes
    method.bottleneck, method.classifier = method.build_head(data.num_classes)
    method.build_extra(data)
    return method


def _batch(data, n=8, domain="target"):
    labeled = data.target if domain == "target" else data.source
    return torch.as_tensor(labeled.X[:n]), torch.as_tensor(labeled.y[:n])


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def _ids(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


# ------------------------------------------------------------------------------------------- multi-task


@pytest.mark.parametrize("options, private", [
    (dict(sharing="input"), ()),                                  # hard sharing: one linear head per task
    (dict(sharing="input", shared_stages=2), ("fc",)),
    (dict(sharing="input", shared_stages=1), ("conv2", "fc")),
    (dict(sharing="middle"), ("conv1",)),
    (dict(sharing="middle", private_stages=2), ("conv1", "conv2")),
])
def test_multitask_shares_exactly_the_expected_stages(digits, options, private):
    data, _ = digits
    method = _built(MultiTask(_lenet(), **QUICK, **options), data)
    assert method.private_stage_names == private
    source, target = dict(method.task_stages("source")), dict(method.task_stages("target"))
    assert list(source) == list(target) == ["conv1", "conv2", "fc"]
    for name in target:
        if name in private:  # each task its own copy: distinct parameters, equal at the start
            assert source[name] is not target[name] and not _ids(source[name]) & _ids(target[name])
            assert all(torch.equal(p, q) for p, q in zip(source[name].parameters(), target[name].parameters()))
        else:  # the very same Parameter objects on both paths
            assert all(p is q for p, q in zip(source[name].parameters(), target[name].parameters()))
    assert not _ids(method.source_head) & (_ids(method.classifier) | _ids(method.bottleneck))

    # the source loss reaches the shared stages and the source's own layers, never the target's private ones
    method.zero_grad()
    x, y = _batch(data, domain="source")
    F.cross_entropy(method.source_logits(x), y).backward()
    for name in target:
        reached = all(p.grad is not None and p.grad.abs().sum() > 0 for p in source[name].parameters())
        assert reached, name
        if name in private:
            assert all(p.grad is None for p in target[name].parameters()), name
    assert all(p.grad is None for p in method.classifier.parameters())

    # each private copy learns in its stage's group, at its stage's rate; every trainable parameter in one group
    groups = method.param_groups()
    grouped = [id(p) for group in groups for p in group["params"]]
    assert len(grouped) == len(set(grouped)) and set(grouped) == {id(p) for p in method.parameters() if p.requires_grad}
    for name in private:
        owners = [group for group in groups if _ids(source[name]) <= {id(p) for p in group["params"]}]
        assert len(owners) == 1 and owners[0]["name"] == name


def test_uncertainty_log_variances_are_in_the_optimizer_and_learn(digits):
    data, _ = digits
    method = _built(MultiTask(_lenet(), weighting="uncertainty", **QUICK), data)
    assert isinstance(method.log_vars, nn.Parameter) and method.log_vars.tolist() == [0.0, 0.0]
    head = next(group for group in method.param_groups() if group["name"] == "head")
    assert any(p is method.log_vars for p in head["params"])
    (xs, ys), (xt, yt) = _batch(data, domain="source"), _batch(data)
    source_ce, target_ce = F.cross_entropy(method.source_logits(xs), ys), F.cross_entropy(method(xt), yt)
    loss = method.combine(source_ce, target_ce)
    # at s = 0 the weighted loss is the plain sum; d/ds_k = 1 − exp(−s_k) L_k
    assert loss.item() == pytest.approx((source_ce + target_ce).item())
    loss.backward()
    expected = torch.stack([1 - source_ce.detach(), 1 - target_ce.detach()])
    assert torch.allclose(method.log_vars.grad, expected)

    method = _fit(MultiTask(_lenet(), weighting="uncertainty", **QUICK), data)
    optimizer = method.trainer.optimizers[0]
    assert any(p is method.log_vars for group in optimizer.param_groups for p in group["params"])
    assert (method.log_vars.detach() != 0).all()  # both moved: gradient and optimizer steps reached them


def test_fixed_weights_weigh_the_two_cross_entropies():
    method = MultiTask(_lenet(), source_weight=0.25, target_weight=2.0)
    assert method.combine(torch.tensor(4.0), torch.tensor(1.5)).item() == pytest.approx(0.25 * 4 + 2 * 1.5)


def test_joint_training_on_digits_beats_chance_and_trains_the_shared_layers(digits):
    data, evaluation = digits
    method = MultiTask(_lenet(small=False), sharing="middle", **{**QUICK, "epochs": 3, "iterations_per_epoch": 10})
    shared_before = _snapshot(method.backbone.fc)
    _fit(method, data)
    accuracy = float(np.mean(method.predict(evaluation.target_test.X) == evaluation.target_test.y))
    assert accuracy > 0.3, accuracy  # chance: 0.1
    assert method.pretraining is None  # no source phase: the joint training is the transfer
    assert any(not torch.equal(shared_before[k], v) for k, v in _snapshot(method.backbone.fc).items())


@pytest.mark.parametrize("options, message", [
    (dict(sharing="inputs"), "sharing must be one of input, middle"),
    (dict(weighting="uncertain"), "weighting must be one of fixed, uncertainty"),
    (dict(shared_stages=0), "1 <= shared_stages <= 3"),
    (dict(shared_stages=4), "1 <= shared_stages <= 3"),
    (dict(sharing="middle", private_stages=3), "1 <= private_stages <= 2"),
    (dict(source_weight=0.0, target_weight=0.0), "not both 0"),
])
def test_multitask_misspelt_options_raise(options, message):
    with pytest.raises(ValueError, match=message):
        MultiTask(_lenet(), **options)


# ------------------------------------------------------------------------------------------ progressive


def test_progressive_column1_is_bit_identical_after_training(digits):
    data, _ = digits
    snapshots = {}

    class Watched(Progressive):
        def build_extra(self, data):
            super().build_extra(data)
            snapshots["column1"] = _snapshot(self.column1)
            snapshots["column2"] = _snapshot(self.backbone)
            snapshots["laterals"] = _snapshot(self.laterals)

    torch.manual_seed(0)
    method = _fit(Watched(TinyBN(), **QUICK), data)
    column1 = method.column1
    assert any("running_mean" in key for key in snapshots["column1"])  # buffers are checked too
    after = _snapshot(column1)
    assert after.keys() == snapshots["column1"].keys()
    assert all(torch.equal(after[key], value) for key, value in snapshots["column1"].items())
    assert not column1.training and not any(p.requires_grad for p in column1.parameters())
    # column 2 and the adapters trained
    assert any(not torch.equal(v, snapshots["column2"][k]) for k, v in _snapshot(method.backbone).items())
    assert any(not torch.equal(v, snapshots["laterals"][k]) for k, v in _snapshot(method.laterals).items())
    # column 1 has no optimizer group
    optimizer = method.trainer.optimizers[0]
    assert not _ids(column1) & {id(p) for group in optimizer.param_groups for p in group["params"]}
    # the logged model is column 2, adapters and head: the frozen column is not saved again
    assert not any(key.startswith("column1.") for key in method.saved_state())


@pytest.mark.parametrize("init", ["random", "copy"])
def test_progressive_laterals_and_column2_receive_gradient(digits, init):
    data, _ = digits
    torch.manual_seed(0)
    method = _built(Progressive(TinyBN(), column2_init=init, lateral_scale=0.5, **QUICK), data)
    assert len(method.laterals) == 2  # conv output (4-D: 1×1 conv) and column 1's features (2-D: linear)
    assert isinstance(method.laterals[0].map, nn.Conv2d) and isinstance(method.laterals[1].map, nn.Linear)
    assert all(lateral.scale.item() == 0.5 for lateral in method.laterals)
    same = [torch.equal(p, q) for p, q in zip(method.column1.parameters(), method.backbone.parameters())
            if p.dim() > 1]  # the weight matrices and kernels (a fresh batch norm is 1s and 0s either way)
    assert all(same) if init == "copy" else not any(same)
    assert method.backbone_lr_mult == (1.0 if init == "random" else 0.1)

    method.train()
    x, y = _batch(data)
    F.cross_entropy(method(x), y).backward()
    for lateral in method.laterals:
        assert lateral.scale.grad is not None and lateral.scale.grad.abs() > 0
        assert lateral.map.weight.grad is not None and lateral.map.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.backbone.parameters())
    assert all(p.grad is None for p in method.column1.parameters())
    assert not method.column1.training  # stays in eval mode when the method trains

    groups = {group["name"]: {id(p) for p in group["params"]} for group in method.param_groups()}
    assert _ids(method.laterals) <= groups["head"] and groups["conv"] == _ids(method.backbone.conv)
    assert not _ids(method.column1) & set().union(*groups.values())


def test_progressive_lateral_scale_starts_small_as_in_the_paper_and_is_learned(digits):
    """The paper's adapters scale column 1's activations by a learned scalar "initialized by a random small value"
    (no number given): the default starts every α_i at 0.01, and one training step moves it."""
    data, _ = digits
    started = {}

    class Watched(Progressive):
        def build_extra(self, data):
            super().build_extra(data)
            started.update({index: lateral.scale.item() for index, lateral in enumerate(self.laterals)})

    assert Progressive(TinyBN()).lateral_scale == 0.01
    torch.manual_seed(0)
    method = _fit(Watched(TinyBN(), **{**QUICK, "epochs": 1, "iterations_per_epoch": 1}), data)
    assert started == {0: pytest.approx(0.01, abs=1e-9), 1: pytest.approx(0.01, abs=1e-9)}  # float32 0.01
    trained = [p for group in method.trainer.optimizers[0].param_groups for p in group["params"]]
    for index, lateral in enumerate(method.laterals):
        assert any(p is lateral.scale for p in trained)
        assert lateral.scale.requires_grad and lateral.scale.item() != started[index]


def test_progressive_on_lenet_uses_its_pretrained_source_column(digits):
    data, evaluation = digits
    # 2 × 6 steps: the laterals start at α = 0.01 (the default), 2 × 3 steps left the target at 27 % (41 % with α = 1)
    method = _fit(Progressive(_lenet(small=False), **{**QUICK, "pretrain_epochs": 2, "iterations_per_epoch": 6}), data)
    assert method.pretraining is not None  # column 1 came from the source phase
    assert len(method.laterals) == 3 and isinstance(method.laterals[0].map, nn.Conv2d)
    accuracy = float(np.mean(method.predict(evaluation.target_test.X) == evaluation.target_test.y))
    assert accuracy > 0.3, accuracy


def test_lateral_rejects_other_shapes():
    assert Lateral((2, 5), 1.0)(torch.ones(2, 5)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"\(n, C, H, W\) or \(n, d\)"):
        Lateral((2, 3, 5), 1.0)


@pytest.mark.parametrize("options, message", [
    (dict(column2_init="randm"), "column2_init must be one of random, copy"),
    (dict(lateral_scale=-1.0), "lateral_scale must be a number >= 0"),
    (dict(freeze="first_k"), "would keep randomly drawn column-2 stages"),
    (dict(column2_init="copy", freeze="frist_k"), "freeze must be one of"),
])
def test_progressive_misspelt_options_raise(options, message):
    with pytest.raises(ValueError, match=message):
        Progressive(_lenet(), **options)
