"""The example plugin's own tests: the conformance kit, then the behaviour that defines the method."""

from __future__ import annotations

import torch
from unlearnkit_example import FinetuneHead, FinetuneHeadParams

from unlearnkit.testing import check_method, tiny_run


def test_finetune_head_conforms():
    check_method(FinetuneHead)


def test_finetune_head_trains_the_head_only():
    run = tiny_run(FinetuneHead)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    FinetuneHead(FinetuneHeadParams(epochs=2, batch_size=8, lr=0.5)).unlearn(run)
    after = run.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.weight", "head.bias"}
