"""FT: fine-tune the original model on the retain set with cross-entropy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from unlearnkit import Method, Range, TrainParams, retain_cross_entropy

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit import UnlearnRun


class FineTune(Method):
    """FT: fine-tune on the retain set with cross-entropy (catastrophic forgetting of D_u).

    Warnock et al. / Golatkar et al.'s fine-tuning baseline; defaults follow the
    OPTML (SalUn) code: lr 0.01 constant, 10 epochs. The CoUn paper tunes lr in [0.01, 0.1].
    """

    name = "ft"
    Params = TrainParams
    params: TrainParams
    search_space = {"lr": Range(0.003, 0.3, log=True)}  # the paper's [0.01, 0.1], half a decade wider each side: winners sat on its edges
    uses_forget = False

    def unlearn(self, run: UnlearnRun) -> None:
        run.train(retain_cross_entropy, self.params, over="retain")
