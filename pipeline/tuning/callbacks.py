"""Keras callbacks of a trial: per-epoch recording (one tracking call per epoch), a NaN guard, the
best epoch's checkpoint written once, and the search's time budget."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
from keras_tuner.src.engine.tuner_utils import SaveBestEpoch

from pipeline.errors import TrackingError
from pipeline.model.deadline import StopAtDeadline
from pipeline.time_budget import TimeBudget
from pipeline.tuning.records import EPOCH_METRICS, TrialRecord
from pipeline.tuning.tracker import TrialTracker


class TrackingLost(kt.errors.FatalError):
    """The tracking store failed during a trial: stop the search (KerasTuner would fail the trial and go on)."""


class EpochRecorder(keras.callbacks.Callback):
    """Appends each epoch's metrics to the record and sends them to the tracker in one batch.

    Keras passes the absolute epoch (``initial_epoch + i``) to ``on_epoch_end``, so a Hyperband
    continuation logs its first epoch at step ``initial_epoch``.
    """

    def __init__(self, record: TrialRecord, tracker: TrialTracker, run_id: str | None) -> None:
        super().__init__()
        self.record, self.tracker, self.run_id = record, tracker, run_id
        self._epoch_start = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.record.params_count = int(self.model.count_params())

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.record.seconds += time.perf_counter() - self._epoch_start
        logs = dict(logs or {})
        if "learning_rate" not in logs:
            logs["learning_rate"] = _current_learning_rate(self.model)
        metrics = {k: float(logs[k]) for k in EPOCH_METRICS if logs.get(k) is not None}
        self.record.history.append({"epoch": int(epoch), **metrics})
        try:
            self.tracker.log_epoch(self.run_id, int(epoch), metrics)
        except TrackingError as error:
            raise TrackingLost(str(error)) from None


class NanGuard(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that remembers it fired, so the tuner can fail the trial afterwards.

    TerminateOnNaN only stops training; KerasTuner would then score the trial on its finite
    epochs and call it COMPLETED.
    """

    def __init__(self) -> None:
        super().__init__()
        self.nan_at: int | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.nan_at = self._epoch
        super().on_batch_end(batch, logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.nan_at is None:
            self.nan_at = epoch
            self.model.stop_training = True


def _current_learning_rate(model: Any) -> float | None:
    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except Exception:  # noqa: BLE001 - a schedule object or no optimizer: leave it out
        return None


class DeferredBestEpoch(SaveBestEpoch):
    """KerasTuner's best-epoch checkpoint, kept in memory while the trial trains and written when it ends.

    KerasTuner writes the weights file at every epoch that improves the objective (most epochs
    of a trial: ~0.07 s of CPU each). This keeps a copy of the variables instead and writes the
    file once; when the best epoch is the last one, the file is a copy of the trial's last state
    (``last_state``, written just before by ``SaveTrainingState``: the same variables, saved the
    same way). The same epochs are chosen (KerasTuner's own comparison), and the file holds the
    same values. A trial killed mid-way has no checkpoint; it is retried on resume anyway.
    """

    def __init__(self, objective: Any, filepath: str, last_state: Path | None = None) -> None:
        super().__init__(objective, filepath)
        self.last_state = last_state
        self._best: list[Any] | None = None
        self._best_is_last = False

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._best_is_last = False
        super().on_epoch_end(epoch, logs)

    def _save_model(self) -> None:  # KerasTuner calls it for an improving epoch
        self._best = [keras.ops.convert_to_numpy(v).copy() for v in _saved_variables(self.model)]
        self._best_is_last = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._best is None:
            return
        path = Path(self.filepath)
        tmp = path.with_name(f".{path.name}.tmp.weights.h5")
        optimizer = getattr(self.model, "optimizer", None)
        if self._best_is_last and self.last_state is not None and self.last_state.is_file() and \
                not getattr(optimizer, "use_ema", False):  # with EMA, fit's end changed the weights
            shutil.copyfile(self.last_state, tmp)
        else:
            variables = _saved_variables(self.model)
            last = [keras.ops.convert_to_numpy(v).copy() for v in variables]
            for variable, value in zip(variables, self._best, strict=True):
                variable.assign(value)
            try:
                self.model.save_weights(tmp)
            finally:
                for variable, value in zip(variables, last, strict=True):
                    variable.assign(value)
        tmp.replace(path)
        self._best = None


def _saved_variables(model: Any) -> list[Any]:
    """Every variable ``save_weights`` may store: the model's and its optimizer's."""
    optimizer = getattr(model, "optimizer", None)
    extra = list(optimizer.variables) if optimizer is not None and optimizer.built else []
    return list(model.variables) + extra


class TrialDeadline(StopAtDeadline):
    """``StopAtDeadline`` for the trials of a search: a trial whose next epoch would end past
    ``tune.time_budget`` (or that ran it out) ends at that epoch end and is scored on the epochs it
    reached (COMPLETED, as with early stopping), so the search ends within its budget or a fraction of
    an epoch past it.

    KerasTuner deep-copies the search's callbacks for every trial: each copy shares the budget (a
    ``TimeBudget`` is never copied) and asks ``running_trial`` which trial it stops, for the note.
    """

    def __init__(self, budget: TimeBudget, running_trial: Callable[[], str | None]) -> None:
        super().__init__(budget, "a trial")
        self.running_trial = running_trial

    def __deepcopy__(self, memo: dict[int, Any]) -> TrialDeadline:
        return TrialDeadline(self.budget, self.running_trial)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        trial_id = self.running_trial()
        self.name = f"trial {trial_id}" if trial_id else "a trial"
        super().on_epoch_end(epoch, logs)
