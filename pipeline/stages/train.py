"""Stage ``train``: the search's best configurations retrained into ``models/model.keras``.

Reads ``results/tune/best_hparams.json``, retrains its best ``train.configurations``
configuration(s) with ``train.seeds`` seeds for ``train.epochs`` (``pipeline.model.final``), with
the best initial point too when validation cannot tell it from the best (``train.hedge_initial_point``),
warns when a retrained configuration falls short of the score the search reported, and
saves their average as one model that takes raw pixels. Writes the per-epoch history for
``dvc plots`` and the MLflow run's ids for evaluate/register. ``train.time_budget`` bounds the
run's wall clock: the model training when it is spent stops at its next epoch end and no other
starts; one line, the run's metrics and run.json's ``time_budget`` say so.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any

from pipeline import paths
from pipeline.errors import PipelineError
from pipeline.handoff import read_handoff
from pipeline.lineage import same_data

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def read_best_hparams(path: Any = paths.BEST_HPARAMS_FILE) -> dict[str, Any]:
    best = read_handoff(path, producer="tune", required="values")
    if not isinstance(best["values"], dict):
        raise PipelineError(f"{path}: 'values' is not a mapping of hyperparameters; rerun `python -m pipeline tune`")
    return best


def candidates_of(best: dict[str, Any]) -> list[dict[str, Any]]:
    """The configurations to retrain, best first: ``top`` of best_hparams.json, or the best one (older files)."""
    top = [c for c in best.get("top") or [] if isinstance(c, dict) and isinstance(c.get("values"), dict)]
    if not top:
        top = [{"trial_id": best.get("trial_id"), "score": best.get("score"), "values": best["values"],
                "trial_dir": None}]
    return top


def history_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: row.get(key, "") for key in HISTORY_COLUMNS})
    return out.getvalue()


def run(params, args) -> int:  # noqa: ANN001 - Params / argparse.Namespace
    from pipeline.time_budget import TimeBudget

    budget = TimeBudget(params.train.time_budget, key="train.time_budget")  # from the stage's start
    best = read_best_hparams()
    meta, data = load_data(best)
    from pipeline.atomic import write_json_atomic
    from pipeline.model.final import final_configurations, member_plan, train_final
    from pipeline.model.precision import resolve_precision
    from pipeline.progress import Progress
    from pipeline.tracking.api import open_tracker

    tracker = open_tracker(params)  # fails in seconds when the store is unusable, before any training
    objective = best.get("objective") or params.tune.objective
    complete = completer(params)

    def build(values: dict[str, Any], seed: int) -> Any:
        from pipeline.model.hypermodel import hypermodel_from_meta

        return hypermodel_from_meta(params.search_space, meta, seed=seed, total_epochs=params.train.epochs,
                                    precision=params.precision).build(complete(values))

    configurations = final_configurations(candidates_of(best), best.get("initial_point"),
                                          params.train.configurations, params.train.hedge_initial_point,
                                          len(data[3]), objective)
    hedge = next((c for c in configurations if c.get("hedge")), None)
    if hedge is not None:
        print_hedge(configurations[0], hedge, objective, len(data[3]))
    candidates = [{**c, "values": dict(complete(c["values"]).values)}
                  for c in member_plan(configurations, params.train.seeds, params.seed)]
    candidates = without_other_data_checkpoints(candidates, best, meta)
    tags = {"search_run_id": best.get("search_run_id"), "trial_id": best.get("trial_id"),
            "data_fingerprint": meta.get("fingerprint"), "stage": "train",
            "ensemble_trials": ",".join(str(c["trial_id"]) for c in configurations),
            "precision": resolve_precision(params.precision)}
    if hedge is not None:
        tags["hedge_trial"] = str(hedge["trial_id"])
    train = params.train
    progress = Progress(len(candidates) * train.epochs, "train epoch", budget=budget)
    with tracker.start_train_run(best["values"], tags) as run_log:
        final = train_final(candidates, build, data, epochs=train.epochs, patience=train.early_stopping_patience,
                            objective=objective, seed=params.seed, tolerance=train.reproduce_tolerance,
                            margin=train.ensemble_margin, budget=budget,
                            on_epoch=epoch_printer(run_log, len(candidates), train.epochs, progress),
                            on_member=member_printer(objective, train.reproduce_tolerance, progress, train.epochs))
        averaged = log_summary(run_log, final, best, objective, train)
        save_model(final, meta, run_log)
        record = {**train_record(run_log.ref, tracker.location, best, objective, final, meta),
                  "time_budget": budget_report(budget, final, run_log)}
    write_json_atomic(paths.TRAIN_RUN_FILE, json.loads(json.dumps(record, default=str)))
    print(f"trained {len(final.members)} model(s), averaged {averaged}: validation "
          f"{objective} {final.score:.4f}; saved {paths.MODEL_FILE}; "
          f"{tracker.backend} run {run_log.ref}")
    return 0


def load_data(best: dict[str, Any]) -> tuple[dict[str, Any], tuple[Any, Any, Any, Any]]:
    """data/processed's metadata and train/validation splits; a warning when the search saw other data."""
    from pipeline.data.store import load_meta, load_split

    meta = load_meta(paths.PROCESSED_DIR)
    data = (*load_split(paths.PROCESSED_DIR, "train"), *load_split(paths.PROCESSED_DIR, "validation"))
    searched_on = best.get("data_fingerprint")
    if not same_data(searched_on, meta.get("fingerprint")):
        print(f"warning: {paths.BEST_HPARAMS_FILE} comes from a search on other data (fingerprint {searched_on}, "
              f"now {meta['fingerprint']}); its configurations are retrained from scratch, never taken from the "
              "search's checkpoints; rerun `python -m pipeline tune` to search on this data", file=sys.stderr)
    return meta, data


def without_other_data_checkpoints(candidates: list[dict[str, Any]], best: dict[str, Any],
                                   meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidates, unable to fall back to a trial checkpoint trained on another split (its weights
    may have seen today's test images) and not held to a score measured on other data."""
    if same_data(best.get("data_fingerprint"), meta.get("fingerprint")):
        return candidates
    return [{**c, "trial_dir": None, "check": False} for c in candidates]


def completer(params: Any) -> Any:
    """values -> the trial's hyperparameters with the space's fixed ones: everything the training loop reads."""
    from pipeline.model.hypermodel import hyperparameters_from_values

    def complete(values: dict[str, Any]) -> Any:
        try:
            return hyperparameters_from_values(params.search_space, values)
        except (KeyError, ValueError, TypeError) as error:
            raise PipelineError(f"{paths.BEST_HPARAMS_FILE}: its values do not fit search_space in params.yaml "
                                f"({error}); rerun `python -m pipeline tune`") from None

    return complete


def print_hedge_decision(hedge: dict[str, Any], objective: str) -> None:
    """``hedge: ...``: whether the searched configuration's models stayed in the average (validation decides)."""
    both, alone = hedge["both_score"], hedge["initial_point_score"]
    if hedge["kept"] == "both":
        print(f"hedge: averaged with the search's configuration, validation {objective} {both:.4f} against "
              f"{alone:.4f} for the initial point's models alone: the final model averages both", flush=True)
    else:
        print(f"hedge: the search's configuration did not raise validation {objective} over the initial point's "
              f"models alone ({both:.4f} averaged, {alone:.4f} alone): the final model is trial "
              f"{hedge['initial_trial']}'s models alone", flush=True)


def print_hedge(best: dict[str, Any], hedge: dict[str, Any], objective: str, images: int) -> None:
    """The line saying the best initial point joins the final model, and why."""
    print(f"hedge: the search's best trial {best['trial_id']} ({objective} {float(best['score']):.4f}) is within the "
          f"validation noise ({hedge['noise']:.4f} on {images} images) of the best initial point, trial "
          f"{hedge['trial_id']} ({float(hedge['score']):.4f}): both are retrained, and the final model averages both "
          "if the search's raises validation over the initial point's alone (train.hedge_initial_point: false keeps "
          "the search's alone)", flush=True)


def epoch_printer(run_log: Any, members: int, epochs: int, progress: Any) -> Any:
    """A ``pipeline.progress.Progress`` line per epoch of each member (done/total epochs, elapsed, ETA);
    the best configuration's curves are the run's (and dvc plots')."""
    def on_epoch(index: int, epoch: int, logs: dict[str, float]) -> None:
        if index == 0:
            run_log.log_epoch(epoch, logs)
        progress.step(f"member {index + 1}/{members} epoch {epoch + 1}/{epochs}: "
                      + "  ".join(f"{k} {logs[k]:.4f}" for k in HISTORY_COLUMNS[1:] if k in logs))

    return on_epoch


def member_printer(objective: str, tolerance: float, progress: Any = None, epochs: int = 0) -> Any:
    """A line per retrained member; a warning when it falls short of the search's score. A member that
    stopped early (patience, budget) moves ``progress`` on to the next member's first epoch."""
    def on_member(member: Any) -> None:
        if progress is not None:
            progress.advance_to((member.index + 1) * epochs)
        print(f"member {member.index + 1}: trial {member.trial_id} retrained (seed {member.seed}) to {objective} "
              f"{member.retrained_score:.4f} (search: {member.search_score:.4f})", flush=True)
        if member.fell_short():
            kept = ("kept the trial's own checkpoint" if member.source != "retrained"
                    else "no trial checkpoint to fall back to; kept the retrained model")
            allowed = (f"train.reproduce_tolerance {tolerance}" if member.tolerance <= tolerance
                       else f"the validation set's noise {member.tolerance:.4f}, above train.reproduce_tolerance")
            print(f"warning: trial {member.trial_id} retrained to {objective} {member.retrained_score:.4f}, "
                  f"{member.shortfall:.4f} short of the search's {member.search_score:.4f} "
                  f"(allowed: {allowed}); {kept}", file=sys.stderr)

    return on_member


def log_summary(run_log: Any, final: Any, best: dict[str, Any], objective: str, train: Any) -> int:
    """The run's summary metrics and reproduction tags; returns how many members were averaged."""
    left_out = [m for m in final.members if not m.in_ensemble]
    if final.hedge is not None:
        print_hedge_decision(final.hedge, objective)
    for m in (m for m in left_out if m.left_out == "margin"):
        allowed = (f"train.ensemble_margin {train.ensemble_margin}" if final.margin <= train.ensemble_margin
                   else f"{final.margin:.4f}, the validation set's noise (above train.ensemble_margin)")
        print(f"member {m.index + 1} (trial {m.trial_id}, {objective} {m.score:.4f}) left out of the average: "
              f"more than {allowed} below the best member", flush=True)
    short = [m for m in final.members if m.fell_short()]
    summary = {f"best_{objective}": final.score, "ensemble_size": len(final.members) - len(left_out),
               "search_score": float(best["score"]) if best.get("score") is not None else final.score,
               "epochs_run": final.members[0].epochs_run}
    for m in final.members:
        summary[f"member_{m.index}_{objective}"] = m.score
    hedge = final.hedge
    if hedge is not None:
        summary["hedge_initial_point_score"] = hedge["initial_point_score"]
    run_log.log_summary(summary, tags={
        "reproduced_search": str(not short).lower(),
        **({"hedge_kept": hedge["kept"]} if hedge is not None else {}),
        "final_trials": ",".join(dict.fromkeys(m.trial_id for m in final.members if m.in_ensemble)),
        **({"short_of_search": ",".join(f"{m.trial_id}:{m.shortfall:.4f}" for m in short)} if short else {}),
    })
    return len(final.members) - len(left_out)


def budget_report(budget: Any, final: Any, run_log: Any) -> dict[str, Any]:
    """The line saying the budget stopped training (when it did), its metrics on the run, and run.json's
    ``time_budget``: budget and time spent in seconds, whether it stopped training, models trained of planned."""
    trained, planned = len(final.members), final.planned or len(final.members)
    if budget.stopped:
        cut = [f"model {m.index + 1} stopped at epoch {m.epochs_run}" for m in final.members if m.stopped_by_budget]
        print(f"{budget.describe()}: trained {trained} of {planned} model(s)"
              f"{' (' + ', '.join(cut) + ')' if cut else ''}", flush=True)
    metrics = budget.metrics()
    run_log.log_summary({**metrics, "models_trained": trained, "models_planned": planned})
    return {"budget_s": budget.seconds, "spent_s": metrics["time_spent_s"], "stopped_by_budget": budget.stopped,
            "models_trained": trained, "models_planned": planned}


def save_model(final: Any, meta: dict[str, Any], run_log: Any) -> None:
    """The averaged model taking raw pixels, and the best member's history for dvc plots."""
    from pipeline.atomic import replace_atomic, write_text_atomic
    from pipeline.model.export import with_input_preprocessing

    model = with_input_preprocessing(final.model, meta["normalization"], pixel_max=meta.get("pixel_max"))
    with replace_atomic(paths.MODEL_FILE) as tmp:
        model.save(tmp)
    write_text_atomic(paths.HISTORY_FILE, history_csv(final.members[0].history))
    run_log.log_artifact(paths.HISTORY_FILE)


def train_record(run: Any, location: str, best: dict[str, Any], objective: str, final: Any,
                 meta: dict[str, Any]) -> dict[str, Any]:
    """What evaluate/register read about this run (train_run.json); ``run``: its ``RunRef``, ``location``:
    the store's (the key keeps its name ``tracking_uri``)."""
    return {
        "run_id": run.id,
        "experiment_id": run.experiment,
        "tracking_uri": location,
        "run_name": run.name,
        "search_run_id": best.get("search_run_id"),
        "trial_id": best.get("trial_id"),
        "hparams": best["values"],
        "monitor": objective,
        "validation_score": final.score,
        "members": [m.summary() for m in final.members],
        "hedge": final.hedge,  # None, or whether the search's configuration stayed in the average (resolve_hedge)
        "epochs_run": final.members[0].epochs_run,
        # The data the model was trained on, for register (signature) and predict (preprocessing).
        "data": meta,
    }
