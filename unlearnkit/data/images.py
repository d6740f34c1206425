"""Images in memory and their per-sample transforms, batched.

A data set is held as uint8 tensors (N, C, H, W). Training views are made on
whole batches at once, but every sample draws its own crop offset and flip,
so two samples of a batch never share one random transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageSet:
    """A labelled image data set as it comes from disk: uint8 (N, C, H, W) images, int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        for name in ("train_x", "test_x"):
            x = getattr(self, name)
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(f"{name} must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
        self.train_y = self.train_y.long()
        self.test_y = self.test_y.long()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        height, width = self.train_x.shape[2:]  # (N, C, H, W), checked in __post_init__
        return height, width


@dataclass(frozen=True)
class Transform:
    """Normalisation, plus training-time random crop (zero padding) and horizontal flip."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 0
    flip: bool = False

    def _standardise(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return self._standardise(images.float().div(255))

    def test_view(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalise(images)

    def train_view(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One augmented view of each image; each sample gets its own crop and flip.

        The crop pads the raw image with black before normalising, as torchvision's RandomCrop does.
        """
        x = images.float().div(255)
        n, _, h, w = x.shape
        p = self.crop_padding
        if p > 0:
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            batch = torch.arange(n, device=x.device)[:, None, None, None]
            chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = padded[batch, chans, rows, cols]
        if self.flip:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return self._standardise(x)
