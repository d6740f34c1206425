"""NoT: negate selected layers' weights, then fine-tune on the retain set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch
from pydantic import Field
from torch import nn

from unlearnkit import Method, Range, TrainParams, UnlearnkitError, retain_cross_entropy

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit import UnlearnRun

#: parameter names (last component) that hold a transformer's positional embedding
POSITIONAL_NAMES = ("pos_embed", "pos_embedding", "position_embedding", "position_embeddings", "positional_embedding")


def _first(modules: Iterable[tuple[str, nn.Module]], kind: type[nn.Module]) -> tuple[str, nn.Module] | None:
    return next(((name, m) for name, m in modules if isinstance(m, kind)), None)


def default_layers(model: nn.Module) -> list[str]:
    """The parameters NoT negates by default, by name (as in `model.named_parameters()`).

    - ResNet / VGG / CNN: the weight of the first ``nn.Conv2d`` in ``model.features``.
    - ViT (a model with a positional-embedding parameter, e.g. ``pos_embed``): that
      positional embedding and the patch-embedding weight: the first ``nn.Conv2d``
      in ``model.features`` (a strided patch convolution), or else the first
      ``nn.Linear`` inside a module whose name contains "patch" (a linear patch
      projection).
    """
    features = getattr(model, "features", model)
    prefix = "features." if features is not model else ""
    positional = [name for name, _ in model.named_parameters() if name.rsplit(".", 1)[-1] in POSITIONAL_NAMES]
    chosen: list[str] = []
    conv = _first(features.named_modules(), nn.Conv2d)
    if conv is not None:
        chosen.append(f"{prefix}{conv[0]}.weight")
    elif positional:
        patch = _first(((n, m) for n, m in model.named_modules() if "patch" in n.lower()), nn.Linear)
        if patch is not None:
            chosen.append(f"{patch[0]}.weight")
    chosen += positional
    if not chosen:
        raise UnlearnkitError(
            f"NoT found no layer to negate in {type(model).__name__}: no nn.Conv2d in model.features "
            "and no positional or patch embedding",
            "Name the parameters with method.params.layers, e.g. --set 'method.params.layers=[features.0.weight]'.",
        )
    return chosen


def resolve_layers(model: nn.Module, layers: list[str] | None) -> list[str]:
    """The names to negate: `layers` checked against the model's parameters, or the default rule."""
    if layers is None:
        return default_layers(model)
    valid = [name for name, _ in model.named_parameters()]
    unknown = [name for name in layers if name not in valid]
    if unknown:
        raise UnlearnkitError(
            f"NoT: unknown parameter name(s) {', '.join(repr(n) for n in unknown)} in method.params.layers",
            f"Valid names: {', '.join(valid)}.",
        )
    if not layers:
        raise UnlearnkitError("NoT: method.params.layers is empty", "Leave it unset for the default layer choice.")
    return list(dict.fromkeys(layers))


@torch.no_grad()
def negate(model: nn.Module, names: list[str]) -> None:
    """Multiply the named parameters by -1, in place."""
    params = dict(model.named_parameters())
    for name in names:
        params[name].neg_()


class NegateThenTuneParams(TrainParams):
    layers: list[str] | None = Field(
        None,
        description="parameter names to negate (as in model.named_parameters()); None = the first conv weight "
        "(ResNet/VGG/CNN) or the positional and patch embeddings (ViT)",
    )


class NegateThenTune(Method):
    """NoT: negate the first layer's weights (multiply by -1), then fine-tune on D_r.

    Khalil, Brunswic, Lamghari, Li, Beitollahi, Chen, "NoT: Federated Unlearning
    via Weight Negation" (CVPR 2025), in the centralised setting the CoUn paper
    compares to. Negating a layer breaks the co-adaptation between it and the
    layers after it, which destroys what the model had fit (the forget data
    included), while leaving the model close to a good optimum so that fine-tuning
    on the retain data quickly recovers. It never reads D_u.

    Layer choice (PROTOCOL.md): ResNet / VGG / CNN: the weight of the first
    ``nn.Conv2d`` in ``model.features`` (found generically, bias and BatchNorm
    untouched); ViT: the positional embedding (a parameter named ``pos_embed``,
    ``pos_embedding``, ...) and the patch-embedding weight (the first conv in
    ``model.features``, or the first linear layer of a module named ``*patch*``).
    No ViT ships with unlearnkit yet; the rule is written so that one following
    these naming conventions works. ``layers`` (a list of parameter names) overrides
    the choice; an unknown name fails with the list of valid names.

    Params: ``layers`` None, and FT's defaults (PROTOCOL.md: "FT defaults"; OPTML
    code): lr 0.01 constant, 10 epochs, batch 256, momentum 0.9, wd 5e-4.
    """

    name = "not"
    Params = NegateThenTuneParams
    params: NegateThenTuneParams
    search_space = {"lr": Range(0.003, 0.3, log=True)}  # FT's
    trains_on_retain = True
    uses_forget = False

    def unlearn(self, run: UnlearnRun) -> None:
        negate(run.model, resolve_layers(run.model, self.params.layers))
        run.train(retain_cross_entropy, self.params, over="retain")
