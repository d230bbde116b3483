"""What one ``tf.function`` per step saves a trial, against Keras' own nested steps (issue 21.4).

``pipeline.model.training.one_graph_steps`` gives a fresh model training and evaluation steps that
are one ``tf.function`` each; Keras nests the step in a second function. Whole searches vary by
more than this change on a shared 2-core VM (BENCHMARKS.md §10), so this compares in one process,
in pairs (``paired_fits``): the same configuration fitted with each kind of step. The fits must end
with the same validation accuracy in every pair (the same ops).

    python bench/one_graph_steps.py --out bench/results/one_graph_steps.json
    python bench/one_graph_steps.py --smoke
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import paired_fits  # noqa: E402


def main() -> int:
    keras_steps = functools.partial(paired_fits.swapped, "pipeline.model.training", "one_graph_steps",
                                    lambda: lambda model: None)  # Keras' own nested steps
    payload = paired_fits.run("one_graph_steps", __doc__, {"one_graph": contextlib.nullcontext, "keras": keras_steps})
    return 0 if payload["same_val_accuracy"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
