"""The final model: the search's best configurations retrained with ``fit_model``, checked, averaged.

Each member is a configuration from the search retrained from scratch for the final budget,
with a seed of its own (the first with the search's seed). That first one's validation score
is compared with the score the search reported: the search's score must be one that training
can reach. One that falls short by more than the tolerance is replaced by the trial's own
best-epoch checkpoint (the model that earned the score), and the shortfall is reported. The
members are averaged (their softmax outputs) into one Keras model, which cancels much of one
initialization's luck; members far below the best on validation are left out. When validation
cannot tell the search's best configuration from the best initial point (the shipped recipe), the
final model averages both (``final_configurations``), unless, retrained, the searched configuration's
models do not raise the validation score over the initial point's alone: then the final model is the
initial point's (``resolve_hedge``), the same models as the recipe retrained alone.

Both gaps are judged against at least the validation set's own noise
(``pipeline.objective.allowed_gap``): on 180 validation images two standard errors of an
accuracy near 0.5 are ~0.07, and the search's score is the best of many epochs and trials on those
images. A 0.01 rule there swapped three retrained models for one trial's lucky second-epoch
checkpoint (cifar_like, BENCHMARKS.md §8b).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from pipeline.model.deadline import FitHorizonToBudget
from pipeline.model.training import evaluation_batches, fit_model, load_training_state
from pipeline.objective import allowed_gap, direction_of, noise_allowance, shortfall
from pipeline.time_budget import TimeBudget

# KerasTuner's best-epoch weights in each trial folder (tuner_utils.SaveBestEpoch).
TRIAL_CHECKPOINT_NAME = "checkpoint.weights.h5"
RETRAINED, TRIAL_CHECKPOINT = "retrained", "trial checkpoint"

EpochHook = Callable[[int, int, dict[str, float]], None]  # (member index, epoch, logs)


@dataclass(eq=False)  # identity: a member holds its model
class Member:
    index: int
    trial_id: str
    values: dict[str, Any]
    search_score: float
    retrained_score: float
    score: float  # the score of the model kept (retrained, or the trial's checkpoint)
    source: str
    shortfall: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    in_ensemble: bool = True
    seed: int = 0
    checked: bool = True  # compared with the search's score (its extra seeds are not: member_plan)
    stopped_by_budget: bool = False  # train.time_budget ended its training before its last epoch
    tolerance: float = 0.0  # the shortfall allowed: train.reproduce_tolerance, or the validation noise if larger
    hedge: bool = False  # the best initial point, added because validation could not tell it from the best
    left_out: str = ""  # why it is not in the average: "margin" (far below the best member) or "hedge"
    model: keras.Model | None = field(default=None, repr=False)

    def fell_short(self) -> bool:
        """Checked against the search, and more than its ``tolerance`` short of its score."""
        return self.checked and self.shortfall > self.tolerance

    def summary(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "search_score": self.search_score,
                "retrained_score": self.retrained_score, "score": self.score, "source": self.source,
                "shortfall": round(self.shortfall, 6), "epochs_run": self.epochs_run,
                "in_ensemble": self.in_ensemble, "seed": self.seed, "stopped_by_budget": self.stopped_by_budget,
                "tolerance": round(self.tolerance, 6), "hedge": self.hedge, "left_out": self.left_out}


def final_configurations(top: list[dict[str, Any]], initial_point: dict[str, Any] | None, configurations: int,
                         hedge: bool, images: int, objective: str) -> list[dict[str, Any]]:
    """The configurations the final model averages: the search's best ``configurations`` (``top``, best
    first), and, with ``hedge``, the best initial point when validation cannot tell it from the best.

    The search's best score is the maximum over many trials and epochs on the same validation images,
    so a searched configuration that leads the recipe by less than the validation noise
    (``noise_allowance``) has not been shown better; retrained alone it can end below the recipe
    (cifar_like, BENCHMARKS.md §8b). Averaging both keeps what each is worth. A hedge member is
    ``{"hedge": True, "noise": <the allowance it was within>}``.
    """
    chosen = list(top[:configurations])
    if not hedge or initial_point is None or not chosen:
        return chosen
    if any(c.get("trial_id") == initial_point.get("trial_id") or c.get("values") == initial_point.get("values")
           for c in chosen):
        return chosen
    best = float(chosen[0]["score"])
    noise = noise_allowance(best, images, objective)
    if shortfall(float(initial_point["score"]), best, objective) > noise:
        return chosen
    return [*chosen, {**initial_point, "hedge": True, "noise": noise}]


def member_plan(configurations: list[dict[str, Any]], seeds: int, base_seed: int) -> list[dict[str, Any]]:
    """The members to train, seed by seed: every configuration with ``base_seed``, then ``base_seed + 1``, ...
    (a time budget that ends early leaves each configuration its first seeds); only the search's own
    seed is checked against the search's score."""
    return [{**c, "seed": base_seed + k, "check": k == 0} for k in range(seeds) for c in configurations]


def validation_score(model: keras.Model, x: np.ndarray, y: np.ndarray, objective: str) -> float:
    """Accuracy or cross-entropy of ``model``'s predictions (compiled or not, e.g. an ensemble)."""
    proba = np.asarray(model.predict(evaluation_batches(x, y), verbose=0), dtype=np.float64)
    if objective.endswith("loss"):
        return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1.0))))
    return float(np.mean(np.argmax(proba, axis=1) == y))


class _Recorder(keras.callbacks.Callback):
    def __init__(self, index: int, rows: list[dict[str, float]], hook: EpochHook | None) -> None:
        super().__init__()
        self.index, self.rows, self.hook = index, rows, hook

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.rows.append({"epoch": epoch, **logs})
        if self.hook is not None:
            self.hook(self.index, epoch, logs)


Builder = Callable[[dict[str, Any], int], keras.Model]  # (values, seed) -> a compiled model


def train_member(index: int, candidate: dict[str, Any], build: Builder,
                 data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], *, epochs: int, patience: int | None,
                 objective: str, seed: int, tolerance: float, on_epoch: EpochHook | None = None,
                 budget: TimeBudget | None = None) -> Member:
    """Retrain one configuration; fall back to its trial checkpoint when the retrained model falls short.

    ``candidate`` may carry its own ``seed`` (weights, data order, dropout) and ``check: false``
    for an extra seed of a configuration already checked against the search. A spent ``budget``
    ends the training at the next epoch end (the model as it is then).
    """
    x, y, x_val, y_val = data
    values = candidate["values"]
    seed = int(candidate.get("seed", seed))
    model = build(values, seed)
    rows: list[dict[str, float]] = []
    callbacks: list[keras.callbacks.Callback] = [_Recorder(index, rows, on_epoch)]
    if patience is not None:
        callbacks.insert(0, keras.callbacks.EarlyStopping(monitor=objective, mode=direction_of(objective),
                                                          patience=patience, restore_best_weights=True))
    deadline = FitHorizonToBudget(budget, f"model {index + 1}") if budget is not None and budget.limited else None
    if deadline is not None:
        callbacks.append(deadline)
    fit_model(model, values, x, y, validation_data=(x_val, y_val), epochs=epochs, seed=seed, callbacks=callbacks)
    retrained = validation_score(model, x_val, y_val, objective)
    promised = float(candidate["score"])
    gap = shortfall(retrained, promised, objective)
    member = Member(index=index, trial_id=str(candidate["trial_id"]), values=values, search_score=promised,
                    retrained_score=retrained, score=retrained, source=RETRAINED, shortfall=gap, epochs_run=len(rows),
                    history=rows, model=model, seed=seed, checked=bool(candidate.get("check", True)),
                    stopped_by_budget=deadline is not None and deadline.stopped_at is not None,
                    hedge=bool(candidate.get("hedge", False)),
                    tolerance=allowed_gap(tolerance, promised, len(y_val), objective))
    if member.fell_short():
        checkpoint = Path(candidate.get("trial_dir") or "") / TRIAL_CHECKPOINT_NAME
        if checkpoint.is_file():
            fallback = build(values, seed)
            load_training_state(fallback, checkpoint)
            kept = validation_score(fallback, x_val, y_val, objective)
            if shortfall(kept, retrained, objective) == 0.0:
                member.model, member.score, member.source = fallback, kept, TRIAL_CHECKPOINT
    return member


def average_ensemble(models: list[keras.Model], input_shape: tuple[int, ...]) -> keras.Model:
    """One model whose output is the mean of the members' class probabilities (one member: itself)."""
    if len(models) == 1:
        return models[0]
    inputs = keras.Input(shape=tuple(input_shape))
    # Members are wrapped under unique names: nested models are layers of the ensemble.
    outputs = [keras.Model(m.inputs[0], m.outputs[0], name=f"member_{i}")(inputs) for i, m in enumerate(models)]
    # Not compiled: it is never trained, and a saved compile state would only carry an unused optimizer.
    return keras.Model(inputs, keras.layers.Average(name="mean_probability")(outputs),
                       name=f"ensemble_of_{len(models)}")


@dataclass
class FinalModel:
    model: keras.Model  # takes normalized input, like the training arrays
    members: list[Member]
    score: float  # the kept model's validation score (the ensemble's when several)
    objective: str
    planned: int = 0  # members planned; more than ``len(members)`` when the time budget ran out first
    margin: float = 0.0  # the ensemble margin applied (train.ensemble_margin or the validation noise)
    hedge: dict[str, Any] | None = None  # resolve_hedge's decision, where the hedge applied


def train_final(candidates: list[dict[str, Any]], build: Builder,
                data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], *, epochs: int, patience: int | None,
                objective: str, seed: int, tolerance: float, margin: float = 1.0, on_epoch: EpochHook | None = None,
                on_member: Callable[[Member], None] | None = None, budget: TimeBudget | None = None) -> FinalModel:
    """Retrain every candidate (best first) and average those within ``margin`` of the best member
    (or within the validation noise at the best member's score, when that is wider).

    With a ``budget``: once it is spent the member training ends at its next epoch end and no other
    starts (the first member always trains, so there is a model); ``planned`` tells how many were due.
    """
    members = []
    for index, candidate in enumerate(candidates):
        # spent, or stopped: a model fitted to the budget used what was left (another would overrun it)
        if members and budget is not None and (budget.is_spent() or budget.stopped):
            budget.stop(f"{len(candidates) - index} model(s) not started")
            break
        keras.utils.set_random_seed(seed)
        member = train_member(index, candidate, build, data, epochs=epochs, patience=patience, objective=objective,
                              seed=seed, tolerance=tolerance, on_epoch=on_epoch, budget=budget)
        members.append(member)
        if on_member is not None:
            on_member(member)
    kept, allowed = within_margin(members, margin, len(data[3]), objective)
    for member in members:
        member.in_ensemble = member in kept
        member.left_out = "" if member.in_ensemble else "margin"
    model, score = ensemble_of(kept, data, objective)
    final = FinalModel(model, members, score, objective, planned=len(candidates), margin=allowed)
    resolve_hedge(final, data, margin)
    return final


def within_margin(members: list[Member], margin: float, images: int, objective: str) -> tuple[list[Member], float]:
    """The members within ``margin`` (or the validation noise at the best score, when wider) of the best
    one, and the margin applied."""
    pick = max if direction_of(objective) == "max" else min
    best = pick(members, key=lambda m: m.score)
    allowed = allowed_gap(margin, best.score, images, objective)
    return [m for m in members if shortfall(m.score, best.score, objective) <= allowed], allowed


def ensemble_of(members: list[Member], data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                objective: str) -> tuple[keras.Model, float]:
    """The average of ``members``' models and its validation score."""
    model = average_ensemble([m.model for m in members], data[0].shape[1:])
    score = members[0].score if len(members) == 1 else validation_score(model, data[2], data[3], objective)
    return model, score


def resolve_hedge(final: FinalModel, data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                  margin: float = 1.0) -> None:
    """Where the initial point's models (the hedge) were trained beside the search's: keep the average
    only if it raises the validation score over the initial point's models alone (averaged as ``train_final``
    averages the recipe retrained alone: those within ``margin``, or the noise, of their best); otherwise
    the final model is those alone (``final.hedge`` records both scores and what was kept).

    Validation decides, and a tie goes to the initial point: the search's configuration was chosen on
    these same validation images, so a level score is no evidence for it, and averaging a weaker
    configuration in can cost accuracy on new images (cifar_like, BENCHMARKS.md §8b). Either way the
    final model is never below the recipe retrained alone on validation.
    """
    initial = [m for m in final.members if m.hedge]
    if not initial or len(initial) == len(final.members):
        return
    objective = final.objective
    alone, _ = within_margin(initial, margin, len(data[3]), objective)
    alone_model, alone_score = ensemble_of(alone, data, objective)
    searched_adds = shortfall(alone_score, final.score, objective) > 0
    final.hedge = {"kept": "both" if searched_adds else "initial point", "both_score": final.score,
                   "initial_point_score": alone_score, "initial_trial": initial[0].trial_id}
    if searched_adds:
        return
    for member in final.members:
        member.in_ensemble = member in alone
        member.left_out = "" if member.in_ensemble else ("margin" if member.hedge else "hedge")
    final.model, final.score = alone_model, alone_score
