"""The one training loop: search trials, the final model and ablation runs all fit through ``fit_model``.

Every epoch's randomness is a pure function of ``(seed, absolute epoch)``: the order of the
training examples and the state of every seeded layer (dropout, augmentation). Together with
the optimizer state saved by ``save_training_state``, training epochs 0..k, saving, and
training k..n later in a freshly built model gives the weights of training 0..n straight.
That is what a Hyperband continuation claims to be, and what ``train`` reruns.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras
import numpy as np

from pipeline.model.schedules import ScheduleCallback

# Keras names the state variable of every SeedGenerator (dropout, random augmentation) this way.
SEED_STATE_SUFFIX = "seed_generator_state"
LAST_STATE_NAME = "last.weights.h5"
VALIDATION_BATCH_SIZE = 256  # evaluation only: fewer, larger batches cost less per epoch


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the ``n`` training examples in ``epoch``: the same for the same (seed, epoch)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


# Entropy of the data-fidelity subsample's permutation, apart from the epoch orders' (seed, epoch).
SUBSAMPLE_STREAM = 0x5AB5


def subsample_rows(n: int, budget: int, full_budget: int, seed: int, minimum: int = 1) -> np.ndarray:
    """Sorted rows of the training subsample a Hyperband rung of ``budget`` (of ``full_budget``) epochs trains on.

    Data fidelity: a rung with a fraction ``budget / full_budget`` of the epochs also sees that
    fraction of the training set (at least ``minimum`` rows), so the first rungs cost a sliver of
    a full trial. The rows are the first of one permutation fixed by ``seed``: a larger budget's
    subsample contains every smaller one's, so a continued trial goes on with the data it has seen.
    """
    count = min(n, max(int(minimum), -(-n * int(budget) // int(full_budget))))  # ceil, in integers
    order = np.random.default_rng([int(seed), SUBSAMPLE_STREAM]).permutation(n)
    return np.sort(order[:count])  # sorted: contiguous reads from memmaps


def without_autotune(dataset: Any) -> Any:
    """``dataset`` with tf.data's autotuning off: every pipeline here has fixed buffers, nothing to tune.

    With autotuning on, ``fit`` sometimes returned seconds after its last epoch had ended, while
    Keras deleted the iterator: on digits (one thread) 13 of 60 fits of 10 epochs waited 0.3-2.5 s
    (their epochs took 2.6 s) and 2 of 5 fits of 60 epochs 3.3-3.9 s; with it off, none of 47.
    That was a quarter of the ablate stage's time (224-231 s, now 170 s, the same results) and a
    sixth of the search's (49 s, now 42 s). Nothing here has a buffer or a parallelism to tune.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def evaluation_batches(x: np.ndarray, y: np.ndarray) -> Any:
    """``x, y`` as the ``VALIDATION_BATCH_SIZE`` batches Keras would make of the arrays, without autotuning
    (``without_autotune``; Keras' own batches of 270 images cost 40 ms more per evaluation); a memory map
    is streamed (``sequential_batches``)."""
    if is_streamed(x):
        return sequential_batches(x, y, VALIDATION_BATCH_SIZE)
    import tensorflow as tf

    return without_autotune(tf.data.Dataset.from_tensor_slices((x, y)).batch(VALIDATION_BATCH_SIZE))


# Batches read per Python step of the input pipeline: one gather and one tensor conversion for 16
# batches, split into batches inside tf.data (C++). Per batch, the Python generator cost about
# half of what Keras' own array adapter does (bench/streaming_throughput.py).
CHUNK_BATCHES = 16


def batch_index(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """The rows of ``epoch``'s batches, batch after batch: ``epoch_order`` cut into ``batch_size`` pieces (the
    last may be short), each piece sorted (contiguous reads from memmaps; a batch's statistics do not
    depend on its order). Both input paths of ``epoch_batches`` read exactly these rows."""
    order = epoch_order(n, seed, epoch)
    return np.concatenate([np.sort(order[b:b + batch_size]) for b in range(0, n, batch_size)])


def epoch_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, initial_epoch: int,
                  epochs: int) -> Any:
    """A ``tf.data.Dataset`` of the batches of epochs ``initial_epoch .. epochs - 1``, in that order.

    Batches never span two epochs (the last one of an epoch may be short), so Keras, given
    ``steps_per_epoch``, ends each epoch exactly where the order of the next one begins. The rows
    of each batch are ``batch_index``'s. In-memory arrays are gathered inside tf.data
    (``in_memory_batches``); a memory map is read ``CHUNK_BATCHES`` batches at a time
    (``streamed_batches``). Both give the same batches for a seed.
    """
    if is_streamed(x):
        return streamed_batches(x, y, batch_size, seed, initial_epoch, epochs)
    return in_memory_batches(x, y, batch_size, seed, initial_epoch, epochs)


def in_memory_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, initial_epoch: int,
                      epochs: int) -> Any:
    """Batches gathered by TensorFlow from the arrays held once as tensors (as Keras' own array adapter does).

    No Python runs per batch or chunk: a ``from_generator`` pipeline hands every chunk from a
    Python thread to TensorFlow's, and on a 2-core VM (AMD EPYC) that hand-off cost as much system
    time as the training itself (futex calls: a fit of 4 epochs took 19-22 s, 15-17 s of it system
    time; gathered in tf.data, 9-12 s and under 1 s).
    """
    import tensorflow as tf

    rows = np.concatenate([batch_index(len(x), batch_size, seed, epoch) for epoch in range(initial_epoch, epochs)])
    sizes = [min(batch_size, len(x) - start) for start in range(0, len(x), batch_size)] * (epochs - initial_epoch)
    # One ragged row per batch: the dataset is the batches' rows and one gather, no nested dataset
    # per epoch (a flat_map of batched epochs, zipped with the arrays repeated, cost ~0.2 s more per
    # fit, most of it in the first epoch: bench/trial_phases.py).
    batches = tf.RaggedTensor.from_row_lengths(rows.astype(np.int64), np.asarray(sizes, dtype=np.int64))
    xs, ys = tf.constant(x), tf.constant(y)
    dataset = tf.data.Dataset.from_tensor_slices(batches).map(
        lambda batch: (tf.gather(xs, batch), tf.gather(ys, batch)))
    return without_autotune(dataset.prefetch(2))


def streamed_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, initial_epoch: int,
                     epochs: int) -> Any:
    """Batches read from a memory map ``CHUNK_BATCHES`` at a time by a Python generator: only those
    rows are ever in memory."""
    import tensorflow as tf

    chunk = batch_size * CHUNK_BATCHES

    def chunks() -> Any:
        for epoch in range(initial_epoch, epochs):
            index = batch_index(len(x), batch_size, seed, epoch)
            for start in range(0, len(x), chunk):  # chunks end on batch boundaries
                rows = index[start:start + chunk]
                yield np.asarray(x[rows]), np.asarray(y[rows])

    signature = (tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype)),
                 tf.TensorSpec((None, *y.shape[1:]), tf.as_dtype(y.dtype)))
    dataset = tf.data.Dataset.from_generator(chunks, output_signature=signature)
    dataset = dataset.flat_map(lambda xs, ys: tf.data.Dataset.from_tensor_slices((xs, ys)).batch(batch_size))
    return without_autotune(dataset.prefetch(2))


def is_streamed(x: Any) -> bool:
    """Whether ``x`` is a memory map (``load_split(..., mmap=True)``): read batch by batch, never copied whole."""
    return isinstance(x, np.memmap)


def sequential_batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> Any:
    """A ``tf.data.Dataset`` of ``x, y`` in order, ``batch_size`` rows at a time (the last may be short).

    The batches Keras makes of in-memory validation arrays, read from a memory map one at a time:
    given arrays, Keras would first copy all of them into one tensor.
    """
    import tensorflow as tf

    def batches() -> Any:
        for start in range(0, len(x), batch_size):
            yield np.asarray(x[start:start + batch_size]), np.asarray(y[start:start + batch_size])

    signature = (tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype)),
                 tf.TensorSpec((None, *y.shape[1:]), tf.as_dtype(y.dtype)))
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    # A known length: Keras otherwise learns it by running out of data, with a warning each fit.
    return without_autotune(
        dataset.apply(tf.data.experimental.assert_cardinality(steps_per_epoch(len(x), batch_size))).prefetch(2))


class EpochSeeds(keras.callbacks.Callback):
    """Sets every seeded layer's random state from ``(seed, epoch)`` at the start of each epoch.

    Keras keeps that state in a variable that ``save_weights`` does not store; deriving it
    from the absolute epoch makes a continued run draw the dropout masks and augmentations
    of an uninterrupted one.
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = int(seed)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        states = [v for v in self.model.variables if v.path.endswith(SEED_STATE_SUFFIX)]
        for index, state in enumerate(states):
            base = np.random.default_rng([self.seed, int(epoch), index]).integers(0, 2**31 - 1, size=2)
            state.assign(base.astype(state.dtype))


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


def fit_model(model: keras.Model, values: dict[str, Any], x: np.ndarray, y: np.ndarray, *,
              validation_data: tuple[np.ndarray, np.ndarray] | None, epochs: int, initial_epoch: int = 0,
              seed: int = 0, total_epochs: int | None = None,
              callbacks: list[keras.callbacks.Callback] | None = None, verbose: int = 0) -> keras.callbacks.History:
    """Train ``model`` (compiled) from ``initial_epoch`` to ``epochs`` with the trial's batch size and schedule.

    ``x`` may be in memory or a memory map (``load_split(..., mmap=True)``): the training batches
    are read from it batch by batch either way, the same rows in the same order for a seed, so a
    streamed run trains exactly as an in-memory one; memory-mapped validation data is streamed too.

    ``total_epochs`` is the horizon of the annealing schedules (default ``epochs``). The
    schedule callback runs before the given ``callbacks``, so they find
    ``logs["learning_rate"]`` in every epoch's logs.
    """
    batch_size = int(values["batch_size"])
    steps = steps_per_epoch(len(x), batch_size)
    schedule = ScheduleCallback(values, total_epochs=total_epochs or epochs, steps_per_epoch=steps)
    for callback in callbacks or []:  # e.g. FitHorizonToBudget, which may shorten the schedule's horizon
        if hasattr(callback, "attach_schedule"):
            callback.attach_schedule(schedule)
    data = epoch_batches(x, y, batch_size, seed, initial_epoch, epochs)
    build_training_state(model, x, y)
    one_graph_steps(model)
    if validation_data is not None:
        validation_data = evaluation_batches(*validation_data[:2])
    # shuffle=False: the dataset already holds each epoch's seeded order.
    return model.fit(data, steps_per_epoch=steps, validation_data=validation_data, shuffle=False,
                     validation_batch_size=VALIDATION_BATCH_SIZE, epochs=epochs, initial_epoch=initial_epoch,
                     callbacks=[EpochSeeds(seed), schedule, *(callbacks or [])], verbose=verbose)


def one_graph_steps(model: keras.Model) -> None:
    """Give a fresh compiled ``model`` training and evaluation steps that are one ``tf.function`` each.

    Keras on TensorFlow wraps a step in two: an outer function that takes the batch from the
    iterator and hands back a ``tf.experimental.Optional``, and the step itself, called inside it;
    every batch then also asks the Optional whether it holds a value (a wait for the device). With
    one step per execution (``steps_per_execution`` 1) and no distribution strategy, none of that
    does anything: here each step is the one function ``step(next(iterator))``, traced once per
    model. On digits, paired in one process, a 5-epoch fit took ~0.2 s less: ~0.07 s less tracing,
    ~9% less per later epoch (``bench/one_graph_steps.py``, BENCHMARKS.md §10); the weights and logs
    are bitwise the same (``tests/test_trial_setup.py``).
    Left as Keras makes them: XLA (``jit_compile``, which cannot compile the iterator), eager
    runs, several steps per execution, a strategy of several replicas; and a model whose steps
    exist already (a kept model continues with the graphs it traced).
    """
    import tensorflow as tf

    if (model.run_eagerly or model.jit_compile or model.steps_per_execution != 1
            or model.distribute_strategy.num_replicas_in_sync != 1 or tf.distribute.has_strategy()):
        return

    def one_graph(step: Any) -> Any:
        @tf.function(reduce_retracing=True)
        @tf.autograph.experimental.do_not_convert
        def function(iterator: Any) -> Any:
            return step(iterator.get_next())  # OutOfRangeError at the end: Keras ends the epoch on it

        return function

    if model.train_function is None:
        model.train_function = one_graph(model.train_step)
    if model.test_function is None:
        model.test_function = one_graph(model.test_step)


def build_training_state(model: keras.Model, x: np.ndarray, y: np.ndarray) -> None:
    """Create the metrics', the loss's and the optimizer's variables now, before ``fit`` traces its step.

    Keras on TensorFlow (without a distribution strategy) leaves them to the first traced training
    step. A ``tf.function`` that creates variables is traced a second time, and the variables are
    initialized inside the graph: on digits that was ~1.4 s of CPU in every trial's first epoch,
    over half of it. Built here, eagerly, the step is traced once; the variables hold the same
    initial values (zeros, the iteration count 0), so training is unchanged.
    """
    symbolic_build = getattr(model, "_symbolic_build", None)  # what Keras runs itself under a strategy
    if symbolic_build is not None:
        symbolic_build(data_batch=(x[:1], y[:1]))
    elif model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


class SaveTrainingState(keras.callbacks.Callback):
    """Saves weights and optimizer state when training ends, for a later continuation."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        save_training_state(self.model, self.path)


def save_training_state(model: keras.Model, path: str | Path) -> None:
    """Weights plus optimizer variables (moments, iteration count), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.weights.h5")
    model.save_weights(tmp)
    tmp.replace(path)


def load_training_state(model: keras.Model, path: str | Path) -> None:
    """Load what ``save_training_state`` wrote into a freshly built, compiled ``model``.

    The optimizer must exist before loading: Keras skips the optimizer variables of an
    unbuilt optimizer ("Skipping variable loading for optimizer"), restarting its moments.
    """
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
