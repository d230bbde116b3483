"""What a data source is: one ``load`` that turns the ``data:`` section into a ``RawDataset``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from pipeline.config import DataConfig


@dataclass
class RawDataset:
    """Images on their raw pixel scale, before splitting and normalization.

    ``preprocess`` splits and normalizes ``x`` in place (it becomes the output buffer), so a
    source hands over an array it does not keep using.
    """

    x: np.ndarray  # float32 (N, H, W, C), raw pixel scale [0, pixel_max]
    y: np.ndarray  # int (N,), indices into class_names
    class_names: list[str]
    pixel_max: float  # 16 for the 8x8 digits, 255 for image files and Keras datasets
    dataset: str  # what meta.json and the summary call the data, e.g. "digits", "cifar10"
    skipped: list[str] = field(default_factory=list)  # bad image files left out (on_bad_image: skip)
    # Extra keys this source records in meta.json (say, a dataset revision). A key the stage writes
    # itself is refused, so a source can never silently overwrite the split sizes or the fingerprint.
    meta: dict[str, Any] = field(default_factory=dict)


class DataSource(Protocol):
    """A way to get labelled images, declared by ``name`` in ``pipeline.registry.SOURCES``."""

    name: str  # the value of ``data.source`` in params.yaml

    def load(self, data: DataConfig) -> RawDataset:
        """The whole dataset; raise ``DataError`` with a line the user can act on when it cannot be had."""
        ...
