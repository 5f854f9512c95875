"""The fine-tuning family: frozen stages stay put, learning rates are the configured ones, gradual unfreezing
follows its schedule, the conservative terms are what their formulas say, and the methods run through the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from tlrun.backbones import MLP, Identity, LeNet
from tlrun.config import instantiate, method_scenarios
from tlrun.data.digits import Digits
from tlrun.losses import distillation_loss, feature_distillation_loss, l2sp_penalty
from tlrun.methods.base import NullReporter, RunContext
from tlrun.methods.finetune import FineTuning
from tlrun.run import run
from tlrun.scenarios import split

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAINER = dict(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)
QUICK = dict(epochs=2, iterations_per_epoch=3, pretrain_epochs=1, report_every=0)


class Recorder(NullReporter):
    def __init__(self) -> None:
        self.metrics: dict[str, list[tuple[int | None, float]]] = {}

    def log_metrics(self, metrics, step=None):
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append((step, value))


def _data(per_class: int = 5, val_fraction: float = 0.0, seed: int = 0):
    source, target = Digits(source="original", target="thick").load_pair()
    return split(source, target, "finetune", seed=seed, source_val_fraction=0.2, target_labels_per_class=per_class,
                 target_val_fraction=val_fraction)


def _mlp(hidden=(32, 16)) -> MLP:
    torch.manual_seed(0)
    return MLP(input_shape=(1, 8, 8), hidden=list(hidden))


def _method(compose, name: str, backbone=None, **overrides) -> FineTuning:
    cfg = compose(f"method={name}", *[f"method.{key}={value}" for key, value in overrides.items()]).method
    return instantiate(cfg, backbone=backbone if backbone is not None else _mlp())


def _fit(method, data, reporter=None, select="last"):
    method.fit(data, RunContext(reporter=reporter or NullReporter(), trainer=dict(TRAINER), select=select))
    return method


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def test_the_fine_tuning_family_is_registered_for_finetune():
    methods = method_scenarios()
    for name in ("target_only", "finetune", "l2sp", "distill_finetune", "multitask", "progressive"):
        assert methods.get(name) == ["finetune"], name


def test_frozen_stages_do_not_move_while_the_others_do(compose):
    data, _ = _data()
    backbone = _mlp()
    backbone.weights_sha256 = "given"  # as if loaded from a file: no source phase, so stages change only here
    method = _method(compose, "finetune", backbone, freeze="first_k", freeze_k=1, epochs=1, iterations_per_epoch=5,
                     report_every=0)
    before = {name: _snapshot(stage) for name, stage in method.backbone.stages()}
    _fit(method, data)
    after = {name: _snapshot(stage) for name, stage in method.backbone.stages()}
    assert method.frozen_stages == ("block1",)
    assert all(torch.equal(before["block1"][k], after["block1"][k]) for k in before["block1"])
    assert any(not torch.equal(before["block2"][k], after["block2"][k]) for k in before["block2"])


@pytest.mark.parametrize("freeze, frozen", [
    ("none", ()), ("all_but_head", ("conv1", "conv2", "fc")), ("first_k", ("conv1", "conv2")), ("last_k", ("fc",)),
])
def test_freeze_policies_name_stages_from_the_right_end(compose, freeze, frozen):
    backbone = LeNet(input_shape=(1, 8, 8), channels=[4, 8], features=16)
    method = _method(compose, "finetune", backbone, freeze=freeze, freeze_k=2, freeze_last_k=1)
    assert method.frozen_stages == frozen


def test_optimizer_groups_carry_the_configured_learning_rates(compose):
    backbone = LeNet(input_shape=(1, 8, 8), channels=[4, 8], features=16)
    method = _method(compose, "finetune", backbone, freeze="first_k", freeze_k=1, lr=0.01, backbone_lr_mult=0.5,
                     layer_decay=0.1, head_lr=0.2)
    method.num_classes = 10
    method.bottleneck, method.classifier = method.build_head(10)
    groups = {group["name"]: group for group in method.param_groups()}
    assert set(groups) == {"head", "conv2", "fc"}  # conv1 is frozen: no group
    assert groups["head"]["lr"] == pytest.approx(0.2)
    assert groups["fc"]["lr"] == pytest.approx(0.01 * 0.5)  # the stage under the head: the backbone's rate
    assert groups["conv2"]["lr"] == pytest.approx(0.01 * 0.5 * 0.1)  # one stage further down: times the decay
    assert {id(p) for p in groups["conv2"]["params"]} == {id(p) for p in backbone.conv2.parameters()}


def test_the_lr_schedule_and_warm_up_multiply_each_group(compose):
    method = _method(compose, "finetune", epochs=4, warmup_epochs=2, lr_schedule="none", unfreeze_every=2)
    total = 40  # 10 steps per epoch
    head = {"start_epoch": 0}
    late = {"start_epoch": 2}
    assert method.lr_factor(0, total, head) == pytest.approx(1 / 20)
    assert method.lr_factor(19, total, head) == pytest.approx(1.0)
    assert method.lr_factor(19, total, late) == 0.0
    assert method.lr_factor(29, total, late) == pytest.approx(10 / 20)


def test_gradual_unfreezing_adds_one_stage_from_the_top_every_n_epochs(compose):
    data, _ = _data()
    method = _method(compose, "finetune", _mlp(hidden=(32, 16, 8)), unfreeze_every=2, epochs=5, iterations_per_epoch=2,
                     pretrain_epochs=0, report_every=0)
    seen: dict[int, list[str]] = {}

    original = method.on_train_epoch_end

    def watch():
        seen[method.current_epoch] = [name for name, stage in method.backbone.stages()
                                      if all(p.requires_grad for p in stage.parameters())]
        original()

    method.on_train_epoch_end = watch
    _fit(method, data)
    assert seen == {0: [], 1: [], 2: ["block3"], 3: ["block3"], 4: ["block2", "block3"]}
    assert [(start, name) for start, name, _ in method.unfreezing_schedule()] == [(2, "block3"), (4, "block2"), (6, "block1")]
    with pytest.warns(UserWarning, match="the stages block1 are never unfrozen"):
        method.callbacks()


def test_frozen_batch_norm_statistics_stay_when_asked(compose):
    data, _ = _data()
    torch.manual_seed(0)
    from tlrun.backbones import ResNet

    backbone = ResNet(input_shape=(1, 8, 8), arch="resnet18", image_size=None)
    backbone.weights_sha256 = "given"  # as if loaded: freezing needs pre-trained stages
    stem_bn = backbone.bn1
    for freeze_bn, should_change in ((True, False), (False, True)):
        method = _method(compose, "finetune", backbone, freeze="first_k", freeze_k=1, freeze_bn=freeze_bn,
                         pretrain_epochs=0, epochs=1, iterations_per_epoch=2, report_every=0, batch_size=8)
        before = stem_bn.running_mean.clone()
        _fit(method, data)
        assert (not torch.equal(before, stem_bn.running_mean)) == should_change


def test_identity_backbone_and_weights_for_target_only_are_refused(compose):
    # (Hydra's instantiate wraps the constructor's ValueError; the runner turns it into a one-line error)
    with pytest.raises(Exception, match="has none; choose a backbone with layers"):
        _method(compose, "finetune", Identity(input_shape=(64,)))
    with pytest.raises(Exception, match="freeze=first_k needs 1 <= freeze_k <= 2"):
        _method(compose, "finetune", freeze="first_k", freeze_k=3)
    with pytest.raises(Exception, match="freeze must be one of"):
        _method(compose, "finetune", freeze="first_two")
    with pytest.raises(Exception, match="would keep randomly initialised stages"):
        _method(compose, "finetune", freeze="all_but_head", pretrain_epochs=0)
    with pytest.raises(Exception, match="would keep randomly initialised stages"):
        _method(compose, "target_only", freeze="first_k")
    backbone = _mlp()
    backbone.weights_sha256 = "abc"  # as if loaded from a file
    with pytest.raises(Exception, match="TargetOnly trains from scratch"):
        _method(compose, "target_only", backbone)


def test_l2sp_penalty_is_zero_at_the_start_and_its_gradient_is_two_alpha_times_the_step():
    w0 = [torch.randn(3, 4), torch.randn(5)]
    w = [torch.nn.Parameter(t.clone()) for t in w0]
    assert l2sp_penalty(w, w0).item() == 0.0
    delta = [torch.randn_like(t) for t in w0]
    with torch.no_grad():
        for p, d in zip(w, delta):
            p.add_(d)
    alpha = 0.3
    (alpha * l2sp_penalty(w, w0)).backward()
    for p, t0 in zip(w, w0):
        assert torch.allclose(p.grad, 2 * alpha * (p.detach() - t0))


def test_l2sp_method_starts_at_zero_penalty_and_pulls_towards_the_pretrained_weights(compose):
    data, _ = _data()
    method = _method(compose, "l2sp", alpha=0.5, beta=0.0, pretrain_epochs=1, epochs=1, iterations_per_epoch=1)
    recorder = Recorder()
    _fit(method, data, recorder)
    pretrained = method.starting_point
    assert len(pretrained) == len(list(method.backbone.parameters()))
    # the penalty of the first epoch's only step is the penalty at the starting point: 0
    assert recorder.metrics["l2sp"][0][1] == 0.0
    assert "pretrain.train_loss" in recorder.metrics and "target_ce" in recorder.metrics


def test_distillation_losses_are_zero_for_identical_outputs_and_positive_otherwise():
    logits = torch.randn(6, 4)
    assert distillation_loss(logits, logits + 3.0, temperature=2.0).abs().item() < 1e-6
    assert distillation_loss(torch.randn(6, 4), logits, temperature=2.0).item() > 0
    features = torch.randn(6, 8)
    assert feature_distillation_loss(features, features).item() == 0.0
    with pytest.raises(ValueError, match="temperature must be positive"):
        distillation_loss(logits, logits, temperature=0.0)


@pytest.mark.parametrize("pretrain_epochs, term", [(1, "source classifier"), (0, "features")])
def test_distill_finetune_starts_at_zero_and_uses_the_source_classifier_when_there_is_one(compose, pretrain_epochs, term):
    data, _ = _data()
    backbone = _mlp()
    if pretrain_epochs == 0:
        backbone.weights_sha256 = "given"  # weights from elsewhere: no source phase, no source classifier
    method = _method(compose, "distill_finetune", backbone, pretrain_epochs=pretrain_epochs, epochs=1, iterations_per_epoch=1)
    recorder = Recorder()
    _fit(method, data, recorder)
    assert (method.source_head is not None) == (term == "source classifier")
    assert abs(recorder.metrics["distill"][0][1]) < 1e-6
    teacher = _snapshot(method.teacher_backbone)
    method2 = _method(compose, "distill_finetune", _mlp(), pretrain_epochs=1, epochs=2, iterations_per_epoch=3)
    _fit(method2, data)
    assert all(p.requires_grad is False for p in method2.teacher_backbone.parameters())
    assert teacher.keys() == _snapshot(method2.teacher_backbone).keys()
    saved = method2.saved_state()  # the logged model leaves the frozen teacher out
    assert not any(key.startswith("teacher_") for key in saved) and any(key.startswith("backbone.") for key in saved)


def test_target_val_selects_and_stops_early(compose):
    data, _ = _data(per_class=10, val_fraction=0.3)
    assert data.target_val is not None and len(data.target_val) == 30 and len(data.target) == 70
    method = _method(compose, "finetune", epochs=6, iterations_per_epoch=2, pretrain_epochs=1, report_every=1,
                     patience=1, lr=1e-6)
    recorder = Recorder()
    _fit(method, data, recorder, select="target_val")
    assert "select.target_val" in recorder.metrics
    assert recorder.metrics["selected_epoch"][0][1] >= 1
    assert "stopped_epoch" in recorder.metrics  # with lr=1e-6 the score cannot improve for long
    assert len(recorder.metrics["select.target_val"]) < 6


def test_target_val_needs_a_held_out_pool(compose):
    with pytest.raises(Exception, match="trainer.select=target_val needs a held-out part of the labeled target"):
        run(compose("method=finetune", "trainer.select=target_val"))


def test_finetune_beats_target_only_with_one_label_per_class(compose):
    """The point of the family, on the embedded shift: source pre-training helps when labels are scarce."""
    data, evaluation = _data(per_class=1)
    accuracy = {}
    for name in ("target_only", "finetune"):
        torch.manual_seed(0)
        backbone = LeNet(input_shape=(1, 8, 8))
        method = _method(compose, name, backbone, epochs=10, report_every=0)
        _fit(method, data)
        accuracy[name] = float(np.mean(method.predict(evaluation.target_test.X) == evaluation.target_test.y))
    assert accuracy["finetune"] > accuracy["target_only"] + 0.05, accuracy


@pytest.mark.parametrize("name, overrides, metrics", [
    ("target_only", [], []),
    ("finetune", ["method.freeze=first_k", "method.unfreeze_every=1"], []),
    ("l2sp", [], ["l2sp", "head_l2", "target_ce"]),
    ("distill_finetune", [], ["distill", "target_ce"]),
    ("multitask", ["method.weighting=uncertainty", "method.sharing=middle"],
     ["source_ce", "target_ce", "source_log_var", "target_log_var"]),
    ("progressive", [], []),
])
def test_every_fine_tuning_method_runs_from_the_command_line(compose, mlflow_store, name, overrides, metrics):
    cfg = compose(f"method={name}", "method.epochs=1", "method.iterations_per_epoch=2", "method.pretrain_epochs=1",
                  *overrides, "scenario.target_labels_per_class=2", "trainer.enable_progress_bar=false",
                  "diagnostics=false", experiment="finetune-cli")
    assert cfg.backbone.name == "lenet"  # the family's default backbone
    accuracy = run(cfg)
    assert 0.0 < accuracy <= 1.0
    client = MlflowClient(tracking_uri=mlflow_store)
    record = client.search_runs([client.get_experiment_by_name("finetune-cli").experiment_id],
                                filter_string=f"tags.method = '{name}'")[0]
    assert record.info.status == "FINISHED" and record.data.tags["scenario"] == "finetune"
    for key in ["train_loss", "target_train_acc", "target_acc", *metrics]:
        assert key in record.data.metrics and np.isfinite(record.data.metrics[key]), key
    assert ("pretrain.train_loss" in record.data.metrics) == (name not in ("target_only", "multitask"))
    assert record.data.params["data.n_target_train"] == "20"
