"""MIA-efficacy: the share of forget samples a membership-inference attack calls non-members.

The attack (as in the unlearning literature's reference code): an RBF SVC (C=3,
gamma='auto') fitted on one per-sample feature of the model's outputs; members
are the first |D_t| retain samples (label 1), non-members the test samples
(label 0); it is then asked about every forget sample. When the retain set is the
smaller (half of a small training set forgotten), both sides keep its size, so the
attack is never fitted on classes of unequal size (it would call everything a
non-member).
"""

from __future__ import annotations

import torch

FEATURES = ("confidence", "correctness", "entropy", "m_entropy", "prob")


def attack_features(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample attack features from logits: (N, 1), or (N, classes) for the full probability vector."""
    probs = torch.softmax(logits.double(), dim=1)
    true = probs.gather(1, labels[:, None])
    if kind == "confidence":
        return true
    if kind == "correctness":
        return (probs.argmax(1, keepdim=True) == labels[:, None]).double()
    if kind == "entropy":
        return -(probs * torch.log(probs.clamp_min(1e-30))).sum(1, keepdim=True)
    if kind == "m_entropy":
        # modified entropy (Song & Mittal 2021): the true class counts as (1-p)log p, the others as p log(1-p)
        log_p = torch.log(probs.clamp_min(1e-30))
        log_1mp = torch.log((1 - probs).clamp_min(1e-30))
        terms = -probs * log_1mp
        true_term = -(1 - true) * log_p.gather(1, labels[:, None])
        terms = terms.scatter(1, labels[:, None], true_term)
        return terms.sum(1, keepdim=True)
    if kind == "prob":
        return probs
    raise ValueError(f"unknown attack feature {kind!r}; choose from {FEATURES}")


def mia_efficacy(
    retain: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    forget: tuple[torch.Tensor, torch.Tensor],
    kind: str = "confidence",
) -> float:
    """Percentage of forget samples predicted non-member. Each argument is (logits, labels)."""
    from sklearn.svm import SVC  # here, not at the top: scikit-learn takes about a second to import

    n = min(len(test[1]), len(retain[1]))
    members = attack_features(retain[0][:n], retain[1][:n], kind)
    non_members = attack_features(test[0][:n], test[1][:n], kind)
    x = torch.cat([members, non_members]).numpy()
    y = [1] * len(members) + [0] * len(non_members)
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    predicted = attack.predict(attack_features(*forget, kind).numpy())
    return 100.0 * float((predicted == 0).mean())
