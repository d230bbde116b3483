"""The data sources, by the name ``data.source`` gives them: the one place the stage asks for data.

A source is declared in ``pipeline.registry.SOURCES`` (its name and the ``data`` keys it reads: what
``params.yaml`` is validated against, before anything loads) and implemented by one module in this
package: an object with a ``name`` and a ``load(data: DataConfig) -> RawDataset`` (see
``base.DataSource``), bound to its name below with ``SOURCES.implement``. DESIGN.md, "How to add
each kind", lists the steps; ``tests/test_registries.py`` checks every declared source is implemented.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.data.sources.base import DataSource, RawDataset
from pipeline.data.sources.digits import DigitsSource, load_digits
from pipeline.data.sources.image_folders import ImageFolderSource
from pipeline.data.sources.keras_datasets import KerasSource
from pipeline.registry import SOURCES

if TYPE_CHECKING:
    from pipeline.config import DataConfig

# load_digits is re-exported for bench/common.py, which imports it from here.
__all__ = ["SOURCES", "DataSource", "RawDataset", "load_digits", "load_source"]

for _source in (DigitsSource(), KerasSource(), ImageFolderSource()):
    SOURCES.implement(_source.name, _source)
del _source


def load_source(data: DataConfig) -> RawDataset:
    """The dataset ``data.source`` names, loaded with the rest of the ``data:`` section."""
    source: DataSource = SOURCES.implementation(data.source)
    return source.load(data)
