"""Data: images in memory (`ImageSet`, `Transform`), torch Datasets (`Datasets`), forget splits."""

from unlearnkit.data.images import ImageSet, Transform
from unlearnkit.data.streamed import Datasets

__all__ = ["Datasets", "ImageSet", "Transform"]
