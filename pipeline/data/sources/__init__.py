"""The data sources, by the name ``data.source`` gives them: the one place the stage asks for data.

A new source is one module in this package: a class with a ``name`` and a
``load(data: DataConfig) -> RawDataset`` (see ``base.DataSource``), added to ``SOURCES`` below.
It also needs a schema edit in ``pipeline/config.py``: its name in ``DataConfig.source``'s
``Literal`` (params.yaml is validated before anything loads, so an unknown name never gets
here) and any option of its own as a ``DataConfig`` field (extra keys are forbidden there).
``tests/test_data.py`` checks that the two lists of names agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.data.sources.base import DataSource, RawDataset
from pipeline.data.sources.digits import DigitsSource, load_digits
from pipeline.data.sources.image_folders import ImageFolderSource
from pipeline.data.sources.keras_datasets import KerasSource

if TYPE_CHECKING:
    from pipeline.config import DataConfig

# load_digits is re-exported for bench/common.py, which imports it from here.
__all__ = ["SOURCES", "DataSource", "RawDataset", "load_digits", "load_source"]

SOURCES: dict[str, DataSource] = {source.name: source for source in (DigitsSource(), KerasSource(),
                                                                      ImageFolderSource())}


def load_source(data: DataConfig) -> RawDataset:
    """The dataset ``data.source`` names, loaded with the rest of the ``data:`` section."""
    try:
        source = SOURCES[data.source]
    except KeyError:
        # Only reachable when config.py lists a name no module registers: a programming error.
        raise ValueError(f"data.source {data.source!r} has no registered source; known: {sorted(SOURCES)}") from None
    return source.load(data)
