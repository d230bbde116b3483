"""KerasTuner tuners that report every trial to a ``TrialTracker`` and keep a ``TrialRecord``.

This module is the adapter to KerasTuner's internals: every protected hook or attribute the
pipeline relies on is used here, each with the reason. The mixin hooks KerasTuner's trial
life cycle: ``on_trial_begin`` opens the trial's run, ``_build_and_fit_model`` adds the
per-epoch recorder, the NaN guard and the saving of the final training state,
``_build_hypermodel`` continues a Hyperband trial from its parent's *last* epoch with the
parent's optimizer state (KerasTuner loads the best epoch's weights into a fresh optimizer),
and ``on_trial_end`` closes the run with the status the oracle settled on.
"""

from __future__ import annotations

import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
from keras_tuner.src.engine.tuner_utils import SaveBestEpoch

from pipeline.model.deadline import StopAtDeadline
from pipeline.model.training import LAST_STATE_NAME, SaveTrainingState, load_training_state
from pipeline.objective import direction_of
from pipeline.registry import TUNERS
from pipeline.tuning import kt_overrides, resume
from pipeline.tuning.bohb import BOHB, SOURCE_KEY, initial_point_epochs
from pipeline.tuning.callbacks import DeferredBestEpoch, EpochRecorder, NanGuard
from pipeline.tuning.heap import TrialHeap
from pipeline.tuning.prior import UNIFORM
from pipeline.tuning.records import TrialRecord
from pipeline.tuning.tracker import FAILED, FINISHED, KILLED, NOT_STARTED, NullTracker, TrialTracker

# Models of trials Hyperband may continue, kept in memory (digits: a few MB each); a round of the
# default search (max_epochs 9, factor 3) has at most 9 trials. As many released ones may wait for
# the full collection that frees them (``TrialHeap``).
KEPT_MODELS = 12
# A process that has run ``tune.trials_per_process`` trials still finishes the search itself when at
# most this fraction of that many trials is left: a fresh process costs an import of TensorFlow and
# Keras (8-13 s on 2 cores, about what the default digits search's last four trials take), and a
# quarter more trials adds ~50 MB to the memory the recycling bounds (~10 MB a trial, BENCHMARKS §4).
RECYCLE_TAIL = 0.25
TUNER_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id", SOURCE_KEY)


class ProcessRecycle(Exception):  # noqa: N818 - a request, not an error
    """Raised between trials when this process has run ``trials_per_process`` trials."""

    def __init__(self, trials: int) -> None:
        super().__init__(f"{trials} trials in this process")
        self.trials = trials
        self.search_run_id: str | None = None  # left open for the next process


def recycle_due(done_here: int, per_process: int, trials_left: int | None) -> bool:
    """Whether a process that has run ``done_here`` trials hands the search to a fresh one: after
    ``per_process`` trials (0: never), unless the search is known to end within ``RECYCLE_TAIL`` of
    that many more (``trials_left`` None: not known)."""
    if not per_process or done_here < per_process:
        return False
    return trials_left is None or trials_left > math.floor(per_process * RECYCLE_TAIL)


class TrackedTunerMixin:
    """Put before a ``kt.Tuner`` subclass: ``class X(TrackedTunerMixin, kt.Hyperband)``."""

    # how the tuner draws a configuration whose values carry no tuner/source tag (BOHB tags each):
    # uniform for Hyperband and random search; None (unknown) where a model chooses, as Bayesian's
    config_source: str | None = None

    def __init__(self, *args: Any, tracker: TrialTracker | None = None, hp_names: list[str] | None = None,
                 on_trial_done: Callable[[TrialRecord], None] | None = None, **kwargs: Any) -> None:
        self.tracker: TrialTracker = tracker or NullTracker()
        self.hp_names = hp_names
        self.on_trial_done = on_trial_done
        self.default_epochs: int | None = None
        self.trials_per_process = 0  # 0: never ask for a fresh process
        self.trials_this_process = 0
        self.trials_left: int | None = None  # when known: no fresh process after the last trial
        self.ended_here: list[TrialRecord] = []  # the trials this process ran, as they ended: what a trial costs here
        # called with each trial the oracle hands out, before anything of it starts; may raise to run none
        self.admit_trial: Callable[[kt.engine.trial.Trial], None] | None = None
        self._active: TrialRecord | None = None
        self._trial_start = 0.0
        self._kept_models: OrderedDict[str, Any] = OrderedDict()  # trial id -> its model, to continue in place
        self.models_reused = 0
        self.heap = TrialHeap(batch=KEPT_MODELS)  # the collection before each trial (pipeline.tuning.heap)
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ life cycle
    def on_trial_begin(self, trial: kt.engine.trial.Trial) -> None:
        if self.admit_trial is not None:
            self.admit_trial(trial)
        self._trial_start = time.perf_counter()
        super().on_trial_begin(trial)
        record = self._new_record(trial)
        record.run_id = self.tracker.start_trial(trial.trial_id, record.values, trial_tags(record))
        record.save(self.get_trial_dir(trial.trial_id))
        self._active = record

    def _build_hypermodel(self, hp: kt.HyperParameters) -> Any:
        # KerasTuner's hook between building a trial's model and fitting it. Hyperband's own
        # version loads the parent's best-epoch weights and drops the optimizer state, so a
        # continued trial would not be the run it stands for; continue from the last epoch.
        parent = hp.values.get("tuner/trial_id")
        if parent is None:
            return super()._build_hypermodel(hp)
        kept = self._kept_models.pop(parent, None)
        if kept is not None:  # the parent's own model, as its training ended: what its last state holds
            self.models_reused += 1
            self.heap.release()  # unless kept again, it is garbage after this trial
            return kept
        model = kt.Tuner._build_hypermodel(self, hp)
        state = Path(self.get_trial_dir(parent)) / LAST_STATE_NAME
        if state.is_file():
            load_training_state(model, state)
        else:  # a search started before states were saved: KerasTuner's best-epoch checkpoint
            model.load_weights(self._get_checkpoint_fname(parent))
        return model

    def _try_build(self, hp: kt.HyperParameters) -> Any:
        # KerasTuner's, with one garbage collection instead of two (Keras' clear_session runs one,
        # KerasTuner another), its survivors frozen (``TrialHeap``): the search's long-lived objects
        # are not scanned again before every trial (~0.55 s of CPU per trial on digits). Kept models
        # stay usable: clearing the session resets Keras' global state, not a model's variables and
        # traced functions.
        keras.backend.clear_session(free_memory=False)
        self.heap.collect()
        model = self._build_hypermodel(hp)
        if not isinstance(model, keras.Model):
            raise kt.errors.FatalTypeError(f"Expected HyperModel.build() to return a Keras Model, got {type(model)}")
        if self.max_model_size and model.count_params() > self.max_model_size:
            raise kt.errors.FailedTrialError(f"Oversized model: {model.count_params()} parameters. Skip model.")
        return model

    def _build_and_fit_model(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> Any:
        record = self._active
        guard = NanGuard()
        state = SaveTrainingState(Path(self.get_trial_dir(trial.trial_id)) / LAST_STATE_NAME)
        given = list(kwargs.get("callbacks") or [])
        # KerasTuner's best-epoch checkpoint, written once at the end (after the last state, which
        # it copies when the best epoch is the last one) instead of at every improving epoch.
        best = [DeferredBestEpoch(c.objective, c.filepath, state.path) for c in given if isinstance(c, SaveBestEpoch)]
        extra = [guard, state, *best]
        if record is not None:
            extra.append(EpochRecorder(record, self.tracker, record.run_id))
        kwargs["callbacks"] = [c for c in given if not isinstance(c, SaveBestEpoch)] + extra
        results = super()._build_and_fit_model(trial, *args, **kwargs)
        if record is not None:
            # scored on fewer epochs than it was given (not a full-budget trial), and on how many rows
            cut = [c.stopped_at for c in kwargs["callbacks"] if isinstance(c, StopAtDeadline) and c.stopped_at]
            record.budget_cut_at = min(cut) if cut else None
            record.train_rows = getattr(self.hypermodel, "last_fit_rows", None)
        if guard.nan_at is not None:
            raise kt.errors.FailedTrialError(f"the loss became NaN in epoch {guard.nan_at}")
        self._keep_for_continuation(trial, state.model)
        return results

    def _keep_for_continuation(self, trial: kt.engine.trial.Trial, model: Any) -> None:
        """Keep the model of a trial Hyperband may continue, to continue it in place.

        A continuation otherwise builds and compiles the same model again, loads the parent's
        last state into it and traces its training step anew: ~2 s of CPU per continued trial
        on digits, a quarter to a third of a Hyperband search's trials. The kept model is that
        state (the file is still written: another process or a resumed search reads it). At most
        ``KEPT_MODELS``, the oldest dropped first.
        """
        target = trial.hyperparameters.values.get("tuner/epochs")
        max_epochs = getattr(self.oracle, "max_epochs", None)
        if not KEPT_MODELS or model is None or target is None or max_epochs is None or int(target) >= int(max_epochs):
            return
        self._kept_models[trial.trial_id] = model
        while len(self._kept_models) > KEPT_MODELS:
            self._kept_models.popitem(last=False)
            self.heap.release()

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        try:
            super().on_trial_end(trial)  # the oracle scores it (and may stop the search)
        finally:
            self._close_active(self._settled(trial))
        self.trials_this_process += 1
        if self.trials_left is not None:
            self.trials_left -= 1
        if recycle_due(self.trials_this_process, self.trials_per_process, self.trials_left):
            # Between trials, with the oracle's state saved: a new process resumes exactly here.
            raise ProcessRecycle(self.trials_this_process)

    def abort_active_trial(self, status: str = KILLED, reason: str = "interrupted", *,
                           tell_tracker: bool = True) -> None:
        """End the running trial's run now (Ctrl-C, SIGTERM: KILLED); KerasTuner retries it on resume.

        ``tell_tracker`` False when the tracking store itself failed: the record says KILLED and
        the resumed search closes the run.
        """
        record, self._active = self._active, None
        if record is None:
            return
        record.status, record.error = status, reason[:500]
        record.save(self.get_trial_dir(record.trial_id))
        if tell_tracker:
            self.tracker.end_trial(record.run_id, status, {}, {"error": record.error})

    def set_aside(self, trial: kt.engine.trial.Trial, reason: str) -> None:
        """Record a trial the oracle handed out that this process will not run (it stays RUNNING in the
        oracle, which hands it out again when the search resumes); no tracking run is opened for it."""
        record = self._new_record(trial)
        record.status, record.error = NOT_STARTED, reason[:500]
        record.save(self.get_trial_dir(trial.trial_id))

    # ------------------------------------------------------------------ helpers
    def _new_record(self, trial: kt.engine.trial.Trial) -> TrialRecord:
        values = trial.hyperparameters.values
        return TrialRecord(
            trial_id=trial.trial_id,
            bracket=values.get("tuner/bracket"),
            round=values.get("tuner/round"),
            continued_from=values.get("tuner/trial_id"),
            initial_epoch=int(values.get("tuner/initial_epoch", 0)),
            target_epochs=int(values.get("tuner/epochs", self.default_epochs or 0)) or None,
            source=values.get(SOURCE_KEY, self.config_source),
            values=self.trial_values(trial),
        )

    def _settled(self, trial: kt.engine.trial.Trial) -> kt.engine.trial.Trial:
        """The trial as the oracle settled it; a distributed worker asks the chief over gRPC."""
        trials = getattr(self.oracle, "trials", None)  # a worker's OracleClient has no ``trials``
        if trials is not None:
            return trials.get(trial.trial_id, trial)
        try:
            return self.oracle.get_trial(trial.trial_id)
        except Exception:  # noqa: BLE001 - the chief is gone: keep the worker's own view
            return trial

    def trial_values(self, trial: kt.engine.trial.Trial) -> dict[str, Any]:
        """The trial's hyperparameters under their search-space names, the same keys every trial."""
        values = trial.hyperparameters.values
        names = self.hp_names or [n for n in values if n not in TUNER_KEYS]
        return {name: values.get(name, "n/a") for name in names}

    def _close_active(self, trial: kt.engine.trial.Trial) -> None:
        record, self._active = self._active, None
        if record is None or record.trial_id != trial.trial_id:
            return
        ok = trial.status == kt.engine.trial.TrialStatus.COMPLETED
        score = trial.score if ok else None
        record.status = FINISHED if ok else FAILED
        record.score = float(score) if score is not None and math.isfinite(score) else None
        record.error = None if ok else last_line(trial.message)
        # the trial's whole time (the oracle's and KerasTuner's bookkeeping included): what
        # trials.csv's fixed cost per trial is measured on (``pipeline.tuning.fixed_cost``)
        record.trial_seconds = time.perf_counter() - self._trial_start
        record.save(self.get_trial_dir(trial.trial_id))
        metrics = {"epochs_trained": float(record.epochs_trained), "seconds": record.seconds}
        if record.score is not None:
            metrics["score"] = record.score
        if record.seconds_per_epoch is not None:
            metrics["seconds_per_epoch"] = record.seconds_per_epoch
        if record.params_count is not None:
            metrics["params_count"] = float(record.params_count)
        self.tracker.end_trial(record.run_id, record.status, metrics,
                               {"error": record.error} if record.error else {})
        self.ended_here.append(record)
        if self.on_trial_done is not None:
            self.on_trial_done(record)


def trial_tags(record: TrialRecord) -> dict[str, str]:
    tags = {"trial_id": record.trial_id, "initial_epoch": str(record.initial_epoch)}
    optional = {"bracket": record.bracket, "round": record.round, "continued_from": record.continued_from,
                "target_epochs": record.target_epochs, "source": record.source}
    tags.update({k: str(v) for k, v in optional.items() if v is not None})
    return tags


def last_line(message: str | None, limit: int = 500) -> str:
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "the trial failed")[:limit]


class TrackedHyperband(TrackedTunerMixin, kt.Hyperband):
    config_source = UNIFORM


class TrackedBOHB(TrackedTunerMixin, BOHB):
    pass


class TrackedRandomSearch(TrackedTunerMixin, kt.RandomSearch):
    config_source = UNIFORM


class TrackedBayesianOptimization(TrackedTunerMixin, kt.BayesianOptimization):
    pass


def make_tuner(tune: Any, hypermodel: kt.HyperModel, *, seed: int, project_name: str,
               tracker: TrialTracker | None = None, hp_names: list[str] | None = None,
               on_trial_done: Callable[[TrialRecord], None] | None = None) -> TrackedTunerMixin:
    """A tracked tuner from the ``tune`` section (``pipeline.config.TuneConfig``): the implementation
    ``pipeline.registry.TUNERS`` holds for ``tune.tuner`` (an unknown name raises, listing the known ones)."""
    kt_overrides.install(tracebacks=tune.keras_verbose)  # before the tuner reloads its state files
    kind = TUNERS.get(tune.tuner)
    tuner_class, own = TUNERS.implementation(kind.name)(tune, hypermodel)
    if not issubclass(tuner_class, TrackedTunerMixin):  # a KerasTuner tuner as it ships: track it
        tuner_class = type(f"Tracked{tuner_class.__name__}", (TrackedTunerMixin, tuner_class), {})
    if tune.resume:  # the chief and a one-process tuner reload the search whichever of them ran it
        resume.share_tuner_state(Path(tune.directory) / project_name)
    tuner: TrackedTunerMixin = tuner_class(
        hypermodel=hypermodel, objective=tune.objective, seed=seed,
        max_consecutive_failed_trials=tune.max_consecutive_failed_trials,
        directory=tune.directory, project_name=project_name, overwrite=not tune.resume,
        tracker=tracker, hp_names=hp_names, on_trial_done=on_trial_done, **own)
    tuner.default_epochs = tune.max_epochs
    resume.forget_unrecorded_trials(tuner.oracle)  # killed as it was handed out: never started, as far as it goes
    resume.drop_finished_retries(tuner.oracle)  # a trial that ended just before a kill is not run again
    if tune.initial_points and "initial_points" not in kind.reads:
        # Every tuner starts from the same points (a fair comparison, and the user's recipe honoured):
        # those that do not run them themselves get them as their first draws.
        queue_initial_points(tuner.oracle, fit_initial_points(tune.initial_points, hypermodel.space))
    return tuner


def queue_initial_points(oracle: Any, points: list[dict[str, Any]]) -> None:
    """``points`` as the first configurations ``oracle`` draws (Optuna's ``enqueue_trial``, for KerasTuner).

    Hyperband, RandomSearch and BayesianOptimization draw every new configuration of their random
    phase from ``Oracle._random_values`` (KerasTuner's protected hook, the only one they share). Each
    call still draws, so the oracle's seed state moves as without the points; a key a point leaves
    open keeps its random value. A point some earlier trial already ran (a resumed search) is skipped.
    """
    ran = [trial.hyperparameters.values for trial in oracle.trials.values()]
    queue = [p for p in points if not any(all(v.get(k) == x for k, x in p.items()) for v in ran)]
    draw = oracle._random_values

    def points_first() -> dict[str, Any] | None:
        values = draw()
        if queue and values is not None:
            values = {**values, **queue.pop(0)}
        return values

    oracle._random_values = points_first
    oracle.initial_points = points  # says the oracle takes them (bench/search_peers.py checks)


# The built-in tuners' implementations: name -> (tune, hypermodel) -> (tuner class, its own arguments);
# make_tuner adds the arguments every tuner takes. Declared (with the tune keys they read) in pipeline/registry.py.
def _hyperband_arguments(tune: Any) -> dict[str, Any]:
    return dict(max_epochs=tune.max_epochs, factor=tune.factor, hyperband_iterations=tune.hyperband_iterations)


TUNERS.implement("bohb", lambda tune, hypermodel: (TrackedBOHB, dict(
    _hyperband_arguments(tune), initial_points=fit_initial_points(tune.initial_points, hypermodel.space),
    initial_epochs=initial_point_epochs(tune.max_epochs, tune.factor, getattr(hypermodel, "fidelity", "epochs")))))
TUNERS.implement("hyperband", lambda tune, hypermodel: (TrackedHyperband, _hyperband_arguments(tune)))
TUNERS.implement("random", lambda tune, hypermodel: (TrackedRandomSearch, dict(max_trials=tune.max_trials)))
TUNERS.implement("bayesian", lambda tune, hypermodel: (TrackedBayesianOptimization, dict(
    max_trials=tune.max_trials, num_initial_points=tune.bayesian_initial_points)))


def fit_initial_points(points: list[dict[str, Any]], space: Any) -> list[dict[str, Any]]:
    """The initial points restricted to what ``space`` searches: a key the space fixes, or a value
    outside its choices/range (e.g. after `-S search_space.optimizer=sgd`), is left to the search."""
    fitted = []
    for index, point in enumerate(points):
        kept = {k: v for k, v in point.items() if getattr(space, k).searched and getattr(space, k).allows(v)}
        dropped = sorted(set(point) - set(kept) - {k for k in point if not getattr(space, k).searched})
        if dropped:
            print(f"note: tune.initial_points[{index}]: {', '.join(dropped)} outside search_space; "
                  "left to the search", flush=True)
        fitted.append(kept)
    return fitted


def expected_trials(tune: Any) -> int:
    """About how many trials the whole search runs (the Hyperband family: the sum of its bracket sizes)."""
    kind = TUNERS.get(tune.tuner)
    if not kind.hyperband_family:
        return tune.max_trials
    oracle = kt.oracles.HyperbandOracle(objective=kt.Objective(tune.objective, direction_of(tune.objective)),
                                        max_epochs=tune.max_epochs, factor=tune.factor,
                                        hyperband_iterations=tune.hyperband_iterations)
    # KerasTuner has no public count of a Hyperband iteration's trials; its bracket layout is.
    per_iteration = sum(oracle._get_size(b, r) for b in range(oracle._get_num_brackets()) for r in range(b + 1))
    # each runs once, outside the brackets
    initial = len(tune.initial_points) if "initial_points" in kind.reads else 0
    return per_iteration * tune.hyperband_iterations + initial


def serve_oracle(oracle: Any, address: str, port: int, ready_line: str, poll: float = 0.5) -> None:
    """KerasTuner's ``oracle_chief.start_server``, but it fails when it cannot bind and ends
    within ``poll`` seconds (not 20) after the last worker was told to stop.

    KerasTuner's servicer and protos are not public API (``keras_tuner.src``); its own
    ``start_server`` cannot be used because it binds with SO_REUSEPORT and polls for 20 s.
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    # gRPC's SO_REUSEPORT would let a second chief share the port and split the workers between two oracles.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1), options=[("grpc.so_reuseport", 0)])
    class Servicer(oracle_chief.OracleServicer):
        def EndTrial(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
            response = super().EndTrial(request, context)
            # KerasTuner saves the oracle before it drops the trial from ongoing_trials (a one-process
            # tuner saves again afterwards, a worker cannot): without this a rerun would retry it.
            self.oracle.save()
            return response

    servicer = Servicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{address}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        print(f"error: the chief cannot listen on {address}:{port} (in use, or not an address of this host)",
              file=sys.stderr, flush=True)
        raise SystemExit(3)
    server.start()
    print(f"{ready_line} {address}:{port}", flush=True)
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll)
    finally:
        server.stop(grace=2)


def wait_when_idle(client: Any, seconds: float = 1.0) -> None:
    """KerasTuner's worker loop asks again at once when Hyperband waits for a round to end
    (status IDLE): a busy loop that would take CPU from the workers that train."""
    ask = client.create_trial

    def create_trial(tuner_id: str) -> Any:
        trial = ask(tuner_id)
        if trial.status == kt.engine.trial.TrialStatus.IDLE:
            time.sleep(seconds)
        return trial

    client.create_trial = create_trial
