"""Garbage collection between trials: one full collection, its survivors frozen, released models freed in batches.

Keras models are reference cycles, so a finished trial's model is freed by the cyclic collector,
not by reference counting. A full collection scans every tracked object (~450,000 once TensorFlow,
Keras, KerasTuner and MLflow are loaded: ~0.25-0.45 s on 2 cores); frozen (``gc.freeze``), the
search's long-lived objects are skipped, and the collection before each trial scans only what the
last trial left (a few ms).

A model kept for Hyperband to continue in place (``TrackedTunerMixin._keep_for_continuation``)
outlives the collection after its trial, so it is frozen with the rest; once it leaves the cache it
can only be freed by unfreezing everything and scanning it all again. Doing that for each one cost
the default digits search 6 of its 24 trials 0.36-0.56 s each (BENCHMARKS.md §10): here it runs once
``batch`` of them have been released, so at most ``batch`` released models wait in memory (a few MB
each on digits) on top of the cache's own.
"""

from __future__ import annotations

import gc


class TrialHeap:
    """The collection before each trial (``collect``) and the count of frozen models let go (``release``)."""

    def __init__(self, batch: int) -> None:
        self.batch = batch  # released models that wait for the full collection (0: none wait)
        self.released = 0
        self.full_collections = 0  # with everything unfrozen first, since this heap was made

    def release(self) -> None:
        """A frozen model is no longer referenced by the search (it may be garbage now)."""
        self.released += 1

    def collect(self) -> None:
        """Free the last trial's garbage, and the released models once ``batch`` of them wait; freeze what is left."""
        if self.released and self.released >= self.batch:
            gc.unfreeze()
            self.released = 0
            self.full_collections += 1
        gc.collect()
        gc.freeze()
