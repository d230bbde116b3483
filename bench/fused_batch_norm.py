"""What the fused batch norm saves a trial, against Keras' own layer (issue 21.4).

``pipeline.model.fused_batch_norm.FusedBatchNormalization`` computes Keras' ``BatchNormalization``
with one ``FusedBatchNormV3`` op per call (and one for its gradient) instead of ~88 small ones. Compared in one
process, in pairs (``paired_fits``): the same configuration built with each layer; the plain
configuration has no batch norm and is the control (its pairs differ by noise alone). The
validation accuracies agree to float32 rounding, not bit for bit: the largest gap is reported.

    python bench/fused_batch_norm.py --out bench/results/fused_batch_norm.json
    python bench/fused_batch_norm.py --smoke
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import paired_fits  # noqa: E402


def keras_layer() -> type:
    import keras

    return keras.layers.BatchNormalization


def main() -> int:
    keras_batch_norm = functools.partial(paired_fits.swapped, "pipeline.model.architectures", "BatchNormalization",
                                         keras_layer)
    paired_fits.run("fused_batch_norm", __doc__, {"fused": contextlib.nullcontext, "keras": keras_batch_norm})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
