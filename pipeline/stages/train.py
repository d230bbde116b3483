"""Stage ``train``: the search's best configurations retrained into ``models/model.keras``.

Reads ``results/tune/best_hparams.json``, retrains its best ``train.configurations``
configuration(s) with ``train.seeds`` seeds for ``train.epochs`` (``pipeline.model.final``),
warns when a retrained configuration falls short of the score the search reported, and
saves their average as one model that takes raw pixels. Writes the per-epoch history for
``dvc plots`` and the MLflow run's ids for evaluate/register.
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
    best = read_best_hparams()
    from pipeline.data.store import load_meta, load_split

    meta = load_meta(paths.PROCESSED_DIR)
    data = (*load_split(paths.PROCESSED_DIR, "train"), *load_split(paths.PROCESSED_DIR, "validation"))
    searched_on = best.get("data_fingerprint")
    if searched_on and meta.get("fingerprint") and searched_on != meta["fingerprint"]:
        print(f"warning: {paths.BEST_HPARAMS_FILE} comes from a search on other data (fingerprint {searched_on}, "
              f"now {meta['fingerprint']}); rerun `python -m pipeline tune` to search on this data", file=sys.stderr)

    from pipeline.atomic import replace_atomic, write_json_atomic, write_text_atomic
    from pipeline.model.export import with_input_preprocessing
    from pipeline.model.final import member_plan, train_final
    from pipeline.model.hypermodel import hypermodel_from_meta, hyperparameters_from_values
    from pipeline.tracking.store import configure
    from pipeline.tracking.train_run import TrainRun

    tracking_uri = configure(params)
    objective = best.get("objective") or params.tune.objective

    def complete(values: dict[str, Any]) -> Any:
        """The trial's values with the space's fixed ones: everything the training loop reads."""
        try:
            return hyperparameters_from_values(params.search_space, values)
        except (KeyError, ValueError, TypeError) as error:
            raise PipelineError(f"{paths.BEST_HPARAMS_FILE}: its values do not fit search_space in params.yaml "
                                f"({error}); rerun `python -m pipeline tune`") from None

    def build(values: dict[str, Any], seed: int) -> Any:
        return hypermodel_from_meta(params.search_space, meta, seed=seed,
                                    total_epochs=params.train.epochs).build(complete(values))

    candidates = [{**c, "values": dict(complete(c["values"]).values)}
                  for c in member_plan(candidates_of(best), params.train.configurations, params.train.seeds,
                                       params.seed)]
    tags = {"search_run_id": best.get("search_run_id"), "trial_id": best.get("trial_id"),
            "data_fingerprint": meta.get("fingerprint"), "stage": "train",
            "ensemble_trials": ",".join(str(c["trial_id"]) for c in candidates)}
    with TrainRun(tracking_uri, best["values"], tags) as mlflow_run:

        def on_epoch(index: int, epoch: int, logs: dict[str, float]) -> None:
            if index == 0:  # the best configuration's curves are the run's (and dvc plots')
                mlflow_run.log_epoch(epoch, logs)
            print(f"member {index + 1}/{len(candidates)} epoch {epoch + 1}/{params.train.epochs}: "
                  + "  ".join(f"{k} {logs[k]:.4f}" for k in HISTORY_COLUMNS[1:] if k in logs), flush=True)

        def on_member(member: Any) -> None:
            print(f"member {member.index + 1}: trial {member.trial_id} retrained (seed {member.seed}) to {objective} "
                  f"{member.retrained_score:.4f} (search: {member.search_score:.4f})", flush=True)
            if member.fell_short(params.train.reproduce_tolerance):
                kept = ("kept the trial's own checkpoint" if member.source != "retrained"
                        else "no trial checkpoint to fall back to; kept the retrained model")
                print(f"warning: trial {member.trial_id} retrained to {objective} {member.retrained_score:.4f}, "
                      f"{member.shortfall:.4f} short of the search's {member.search_score:.4f} "
                      f"(train.reproduce_tolerance {params.train.reproduce_tolerance}); {kept}", file=sys.stderr)

        final = train_final(candidates, build, data, epochs=params.train.epochs,
                            patience=params.train.early_stopping_patience, objective=objective, seed=params.seed,
                            tolerance=params.train.reproduce_tolerance, margin=params.train.ensemble_margin,
                            on_epoch=on_epoch, on_member=on_member)
        left_out = [m for m in final.members if not m.in_ensemble]
        for m in left_out:
            print(f"member {m.index + 1} (trial {m.trial_id}, {objective} {m.score:.4f}) left out of the average: "
                  f"more than train.ensemble_margin {params.train.ensemble_margin} below the best member", flush=True)
        short = [m for m in final.members if m.fell_short(params.train.reproduce_tolerance)]
        summary = {f"best_{objective}": final.score, "ensemble_size": len(final.members) - len(left_out),
                   "search_score": float(best["score"]) if best.get("score") is not None else final.score,
                   "epochs_run": final.members[0].epochs_run}
        for m in final.members:
            summary[f"member_{m.index}_{objective}"] = m.score
        mlflow_run.log_summary(summary, tags={
            "reproduced_search": str(not short).lower(),
            **({"short_of_search": ",".join(f"{m.trial_id}:{m.shortfall:.4f}" for m in short)} if short else {}),
        })

        model = with_input_preprocessing(final.model, meta["normalization"], pixel_max=meta.get("pixel_max"))
        with replace_atomic(paths.MODEL_FILE) as tmp:
            model.save(tmp)
        write_text_atomic(paths.HISTORY_FILE, history_csv(final.members[0].history))
        mlflow_run.log_artifact(paths.HISTORY_FILE)
        record = {
            "run_id": mlflow_run.run_id,
            "experiment_id": mlflow_run.experiment_id,
            "tracking_uri": tracking_uri,
            "run_name": mlflow_run.run_name,
            "search_run_id": best.get("search_run_id"),
            "trial_id": best.get("trial_id"),
            "hparams": best["values"],
            "monitor": objective,
            "validation_score": final.score,
            "members": [m.summary() for m in final.members],
            "epochs_run": final.members[0].epochs_run,
            # The data the model was trained on, for register (signature) and predict (preprocessing).
            "data": meta,
        }
    write_json_atomic(paths.TRAIN_RUN_FILE, json.loads(json.dumps(record, default=str)))
    print(f"trained {len(final.members)} model(s), averaged {len(final.members) - len(left_out)}: validation "
          f"{objective} {final.score:.4f}; saved {paths.MODEL_FILE}; "
          f"MLflow run {mlflow_run.run_name} ({mlflow_run.run_id})")
    return 0
