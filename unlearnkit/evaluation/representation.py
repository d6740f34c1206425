"""The representation space: class centroids, nearest-centroid classes, and 2-D projections for plots."""

from __future__ import annotations

import numpy as np
import torch


def class_centroids(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(classes present, their mean feature vectors)."""
    classes = labels.unique()
    return classes, torch.stack([features[labels == c].mean(0) for c in classes])


def nearest_centroid_class(features: torch.Tensor, classes: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """For each row of `features`, the class whose centroid is nearest (Euclidean)."""
    return classes[torch.cdist(features.double(), centroids.double()).argmin(1)]


def premise_agreement(
    retain: tuple[torch.Tensor, torch.Tensor], features: torch.Tensor, retrain_predictions: torch.Tensor
) -> float:
    """% of samples whose nearest retain-class centroid is the class Retrain predicts for them.

    `retain` is (features, labels) of the retain set in the same model's space as `features`. On forget samples
    this is the premise; on test samples, which no model trained on, it is the premise's control.
    """
    classes, centroids = class_centroids(*retain)
    nearest = nearest_centroid_class(features, classes, centroids)
    return 100.0 * (nearest == retrain_predictions).double().mean().item()


def project(features: torch.Tensor, how: str, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D coordinates of `features` by PCA or t-SNE (scikit-learn)."""
    x = features.double().numpy()
    if how == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if how == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(perplexity, (len(x) - 1) / 3)
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    raise ValueError(f"unknown projection {how!r}: use pca or tsne")
