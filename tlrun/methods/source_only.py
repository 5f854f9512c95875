"""Source only: the backbone and a linear classifier trained on the labeled source alone.

The baseline every deep domain-adaptation method is compared with: whatever it reaches on the target is what
adaptation has to improve on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tlrun.methods.deep import DeepMethod


class SourceOnly(DeepMethod):
    """Cross-entropy on labeled source batches; the target is only predicted (for the per-epoch report).

    Constructor arguments: those of :class:`~tlrun.methods.deep.DeepMethod`.
    """

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.record(loss, logits, y)
        return loss
