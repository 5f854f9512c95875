"""Backbone networks (features from samples), their input pipeline and the cache of extracted features.

Configs: ``conf/backbone/<name>.yaml``; the runner builds one with ``instantiate(cfg.backbone, input_shape=...)``.
"""

from tlrun.backbones.base import Backbone, WeightsError
from tlrun.backbones.resnet import ResNet
from tlrun.backbones.small import MLP, Identity, LeNet

__all__ = ["MLP", "Backbone", "Identity", "LeNet", "ResNet", "WeightsError"]
