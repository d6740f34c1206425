"""A model under evaluation, with its outputs on each part of the data computed once and shared."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unlearnkit.engine.streams import RunData
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import Classifier


@dataclass
class Subject:
    """`name` is original, retrain or unlearned; `flops` and `seconds` are what obtaining the model cost."""

    name: str
    model: Classifier
    data: RunData
    flops: float | None
    seconds: float | None
    metrics: dict[str, float | None] = field(default_factory=dict)
    _outputs: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    @torch.no_grad()
    def _pass(self, part: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features, logits, labels) on CPU: one eval-mode pass over a part with test-time transforms."""
        if part not in self._outputs:
            self.model.eval()
            features, logits, labels = [], [], []
            for x, y in self.data.eval_views(part):
                z = self.model.features(x)
                features.append(z.float().cpu())
                logits.append(self.model.head(z).float().cpu())
                labels.append(y.cpu())
            outputs = (torch.cat(features), torch.cat(logits), torch.cat(labels))
            if not bool(torch.isfinite(outputs[1]).all()):  # every metric of it would be meaningless
                raise UnlearnkitError(f"the {self.name} model's outputs on {part} samples are NaN or infinite, "
                                      "so it cannot be measured",
                                      "Its weights or the data hold non-finite values; check the data, the starting "
                                      "weights and the learning rates.")
            self._outputs[part] = outputs
        return self._outputs[part]

    @property
    def forwarded(self) -> int:
        """The samples its passes have run through the model so far (each part once): what measuring it cost."""
        return sum(len(labels) for _, _, labels in self._outputs.values())

    def outputs(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, labels) for retain, forget, train or test samples."""
        _, logits, labels = self._pass(part)
        return logits, labels

    def features(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(penultimate features f(x), labels) for retain, forget, train or test samples."""
        features, _, labels = self._pass(part)
        return features, labels

    def accuracy(self, part: str) -> float:
        """Top-1 accuracy in percent."""
        logits, labels = self.outputs(part)
        return 100.0 * (logits.argmax(1) == labels).float().mean().item()
