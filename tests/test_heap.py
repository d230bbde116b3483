"""The collection between trials (pipeline.tuning.heap): frozen survivors, released models freed in batches."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from pipeline.tuning.heap import TrialHeap


class Node:
    """A reference cycle, as a Keras model is: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # leave the test process as it was


def _kept_and_frozen(heap: TrialHeap, cache: list[Node]) -> weakref.ref[Node]:
    node = Node()
    cache.append(node)
    heap.collect()  # the collection before the next trial freezes it with everything else
    return weakref.ref(node)


def test_the_last_trials_garbage_is_freed_and_survivors_frozen() -> None:
    heap = TrialHeap(batch=3)
    ref = weakref.ref(Node())  # garbage at once (a cycle nobody references)
    heap.collect()
    assert ref() is None and gc.get_freeze_count() > 0 and heap.full_collections == 0


def test_released_kept_models_wait_for_a_batch_then_go_together() -> None:
    heap = TrialHeap(batch=2)
    cache: list[Node] = []
    first, second = _kept_and_frozen(heap, cache), _kept_and_frozen(heap, cache)
    cache.pop(0)
    heap.release()
    heap.collect()
    assert first() is not None and heap.full_collections == 0  # frozen: one released model waits
    cache.pop(0)
    heap.release()
    heap.collect()
    assert first() is None and second() is None and heap.full_collections == 1 and heap.released == 0


def test_with_no_batch_each_released_model_is_freed_before_the_next_trial() -> None:
    heap = TrialHeap(batch=0)
    cache: list[Node] = []
    ref = _kept_and_frozen(heap, cache)
    heap.collect()
    assert ref() is not None and heap.full_collections == 0  # nothing released: no full collection
    cache.clear()
    heap.release()
    heap.collect()
    assert ref() is None and heap.full_collections == 1
