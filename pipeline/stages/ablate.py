"""Stage ``ablate``: the best configuration against itself with one dimension changed, over matched seeds.

Reads ``results/tune/best_hparams.json`` and ``data/processed``; trains the best configuration
and every variant of ``ablate.dimensions`` for ``ablate.epochs``, each at its own best learning
rate, with ``ablate.seeds`` seeds and more where power needs them (``pipeline.ablation.experiment``),
each run a nested tracked run under ``ablation-<time>`` (``pipeline.tracking.api``);
writes ``results/ablate/``: results.json (every run, every effect with its interval),
verdicts.json (the report's evidence, ``evidence: "ablation"``) and effects.png.
``ablate.enabled: false`` writes the same files empty, and the report keeps the search's answers.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline import paths
from pipeline.errors import PipelineError
from pipeline.handoff import read_handoff
from pipeline.lineage import same_data
from pipeline.time_budget import TimeBudget

ABLATE_DIR, RESULTS_FILE = paths.ABLATE_DIR, paths.ABLATE_RESULTS_FILE
VERDICTS_FILE, FIGURE_FILE = paths.ABLATE_VERDICTS_FILE, paths.ABLATE_FIGURE


def _write(out_dir: Path, results: dict[str, Any], verdicts: list[Any]) -> None:
    from pipeline.verdicts import write_verdicts

    (out_dir / RESULTS_FILE.name).write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    write_verdicts(out_dir / VERDICTS_FILE.name, verdicts)


def run(params, args=None) -> int:  # noqa: ANN001 - pipeline.config.Params / argparse.Namespace
    config = params.ablate
    if not config.enabled:
        return _write_disabled()
    best = read_best(config)
    epochs = config.epochs or params.train.epochs

    from pipeline.ablation.experiment import run_experiment
    from pipeline.ablation.plan import METRIC, plan_variants
    from pipeline.data.store import load_meta
    from pipeline.tracking.api import open_tracker

    meta = load_meta(paths.PROCESSED_DIR)
    searched_on = best.get("data_fingerprint")
    if not same_data(searched_on, meta.get("fingerprint")):
        print(f"warning: {paths.BEST_HPARAMS_FILE} comes from a search on other data (fingerprint {searched_on}, "
              f"now {meta['fingerprint']}); its best configuration is ablated on this data", file=sys.stderr)
    variants, skipped = plan_variants(best["values"], config.dimensions, config.baselines)
    budget = TimeBudget(config.time_budget, key="ablate.time_budget")  # from the stage's start
    variants, skipped, plan_estimate = _fit_to_budget(variants, skipped, config, epochs, best, budget)
    print(f"ablate: {len(variants) - 1} variant(s) of the best configuration (trial {best.get('trial_id')}) and "
          f"itself, {config.seeds}-{config.max_seeds} seeds (power {config.power:g} for {config.min_effect:g}), "
          f"{epochs} epochs" + (f"; each at its best learning rate of {_grids(config)} "
                                f"({config.rate_seeds} selection seed(s), {config.rate_epochs or epochs} epochs)"
                                if config.retune_rate else "; every run at the best configuration's learning rate"),
          flush=True)
    for item in skipped:
        print(f"  skipped {item['dimension']}={item['value']}: {item['reason']}")

    tracker = open_tracker(params)
    tags = {"search_run_id": best.get("search_run_id"), "trial_id": best.get("trial_id"), "stage": "ablate",
            "data_fingerprint": meta.get("fingerprint")}
    started = time.monotonic()
    with tracker.start_ablation_run(_settings(config, params.seed, epochs, len(variants)), tags,
                                    child_tags={"data_fingerprint": str(meta.get("fingerprint"))}) as run_log:

        with _runner(params, meta, run_log) as runner:

            def train(chosen: list[Any], seeds: Any, run_epochs: int, what: str) -> list[dict[str, Any]]:
                total = sum(len(seeds.get(v.name, ())) if isinstance(seeds, dict) else len(seeds) for v in chosen)
                print(f"ablate: {what}: {total} runs of {run_epochs} epochs", flush=True)
                return runner.run(chosen, seeds, run_epochs, run_printer(total, METRIC))

            outcome = run_experiment(variants, config, params.seed, epochs, train, budget)
            runner.release()  # the workers exit while the findings are computed and written
            results, found, verdicts = _findings(config, best, meta, outcome, epochs)
            results |= {"skipped": skipped, "seconds": round(time.monotonic() - started, 1),
                        "time_budget": _budget_record(budget, plan_estimate, skipped, outcome),
                        # the key keeps its name: the report's ablation section reads it in older results too
                        "mlflow": {"tracking_uri": tracker.location, "experiment_id": run_log.ref.experiment,
                                   "run_id": run_log.ref.id, "run_name": run_log.ref.name, "backend": tracker.backend}}
            _write_outputs(results, found, verdicts, config.min_effect)
        run_log.finish(_summary(found, results["seconds"], METRIC),
                       {"verdicts": "; ".join(f"{v.question}: {v.label}" for v in verdicts)},
                       [RESULTS_FILE, VERDICTS_FILE, FIGURE_FILE])
    _print_findings(found, verdicts, METRIC)
    print(f"ablate: {len(outcome.runs)} runs in {results['seconds']:.0f} s -> {ABLATE_DIR}/; {tracker.backend} run "
          f"{run_log.ref}")
    return 0


def _fit_to_budget(variants: list[Any], skipped: list[dict[str, Any]], config: Any, epochs: int,
                   best: dict[str, Any], budget: Any) -> tuple[list[Any], list[dict[str, Any]], float | None]:
    """The variants that fit ``ablate.time_budget`` (all without one), the skipped ones with those left
    out, and the kept plan's estimated seconds (None: no budget, or no price to size it by)."""
    if not budget.limited:
        return variants, skipped, None
    from pipeline.ablation.budget import fit_plan, seconds_per_epoch

    per_epoch = seconds_per_epoch(paths.TRIALS_FILE, best.get("trial_id"))
    if per_epoch is None:
        print(f"warning: ablate.time_budget: no seconds per epoch for trial {best.get('trial_id')} in "
              f"{paths.TRIALS_FILE}; the plan runs whole", file=sys.stderr)
        return variants, skipped, None
    kept, left_out, estimate = fit_plan(variants, config, epochs, per_epoch, budget.seconds)
    print(f"ablate: time budget {budget.seconds:.0f} s (ablate.time_budget): {len(kept) - 1} of "
          f"{len(variants) - 1} variant(s) fit, ~{estimate:.0f} s at the search's {per_epoch:.2f} s per epoch",
          flush=True)
    if left_out:
        budget.stop(f"{len(left_out)} variant(s) left out")
    return kept, skipped + left_out, estimate


def _budget_record(budget: Any, estimate: float | None, skipped: list[dict[str, Any]], outcome: Any) -> dict | None:
    """results.json's ``time_budget``: the budget, the plan's estimate, what was spent and what it left out."""
    if not budget.limited:
        return None
    from pipeline.ablation.budget import REASON

    return {"budget_s": budget.seconds, "estimate_s": None if estimate is None else round(estimate, 1),
            "spent_s": round(budget.spent(), 1),
            "left_out": [f"{s['dimension']}={s['value']}" for s in skipped if str(s["reason"]).startswith(REASON)],
            "power_seeds_dropped": list(outcome.power_dropped)}


def _grids(config: Any) -> str:
    """``adaptive 0.001/0.003/0.01, sgd 0.01/0.03/0.1``"""
    return ", ".join(f"{name} {'/'.join(f'{r:g}' for r in grid)}"
                     for name, grid in config.learning_rates.model_dump().items())


def _settings(config: Any, seed: int, epochs: int, variants: int) -> dict[str, Any]:
    """The ablation run's MLflow params."""
    from pipeline.ablation.plan import ablation_seeds

    return {"seeds": ",".join(map(str, ablation_seeds(seed, config.seeds))), "max_seeds": config.max_seeds,
            "power": config.power, "seed": seed, "epochs": epochs, "min_effect": config.min_effect,
            "metric": "val_accuracy",
            "retune_rate": config.retune_rate, "learning_rates": json.dumps(config.learning_rates.model_dump()),
            "rate_seeds": config.rate_seeds, "rate_epochs": config.rate_epochs or epochs,
            "dimensions": json.dumps({k: list(v) for k, v in config.dimensions.items()}),
            "baselines": json.dumps(config.baselines), "variants": variants - 1, "workers": config.workers}


def _findings(config: Any, best: dict[str, Any], meta: dict[str, Any], outcome: Any,
              epochs: int) -> tuple[dict[str, Any], list[Any], list[Any]]:
    """results.json's body, the effects and the verdicts of an experiment's runs."""
    from pipeline.ablation.plan import BEST_NAME, METRIC, SCORE_COLUMNS
    from pipeline.ablation.stats import ablation_verdicts, effects

    columns = (METRIC, *[c for c in SCORE_COLUMNS if c != METRIC])
    found = effects(outcome.runs, None, columns, config.min_effect, outcome.rates)
    verdicts = ablation_verdicts(outcome.runs, best["values"], None, meta["num_classes"], config.min_effect, METRIC,
                                 config.baselines, outcome.rates)
    results = {
        # the best configuration's verdict seeds: every variant's are the first of them
        "enabled": True, "metric": METRIC, "seeds": outcome.seeds.get(BEST_NAME, []),
        "seeds_first": config.seeds,
        "seeds_by_variant": outcome.seeds, "seeds_needed": outcome.needed, "max_seeds": config.max_seeds,
        "power_target": config.power, "epochs": epochs, "min_effect": config.min_effect,
        "retune_rate": config.retune_rate, "learning_rates": config.learning_rates.model_dump(),
        "rate_seeds": config.rate_seeds, "rate_epochs": config.rate_epochs or epochs, "rates": outcome.rates,
        "num_classes": meta["num_classes"], "trial_id": best.get("trial_id"),
        "search_run_id": best.get("search_run_id"), "best_values": best["values"],
        "dimensions": {k: list(v) for k, v in config.dimensions.items()}, "baselines": config.baselines,
        "effects": found, "runs": outcome.runs,
    }
    return results, found, verdicts


def _write_disabled() -> int:
    from pipeline.atomic import replace_dir_atomic

    with replace_dir_atomic(ABLATE_DIR) as out_dir:
        _write(out_dir, {"enabled": False, "note": "ablate.enabled is false: the report uses the search's "
                         "evidence"}, [])
    print(f"ablate: skipped (ablate.enabled: false); wrote an empty {VERDICTS_FILE}")
    return 0


def read_best(config: Any) -> dict[str, Any]:
    """best_hparams.json, checked to hold a value for every key the ablation changes."""
    best = read_handoff(paths.BEST_HPARAMS_FILE, producer="tune", required="values")
    if not isinstance(best["values"], dict):
        raise PipelineError(f"{paths.BEST_HPARAMS_FILE}: 'values' is not a mapping of hyperparameters; "
                            "rerun `python -m pipeline tune`")
    keys = [*config.dimensions, *(key for changes in config.baselines.values() for key in changes)]
    missing = list(dict.fromkeys(key for key in keys if key not in best["values"]))
    if missing:
        raise PipelineError(f"{paths.BEST_HPARAMS_FILE}: no value for {', '.join(missing)} (named in ablate); "
                            "rerun `python -m pipeline tune`")
    return best


def run_printer(total: int, metric: str) -> Any:
    """A line per finished run: ``run n/N variant seed: metric (seconds)``."""
    done: list[dict[str, Any]] = []

    def on_run(record: dict[str, Any]) -> None:
        done.append(record)
        if record.get("same_as"):
            print(f"  run {len(done)}/{total} {record['variant']} seed {record['seed']}: the configuration of "
                  f"{record['same_as']}, not trained again", flush=True)
            return
        print(f"  run {len(done)}/{total} {record['variant']} seed {record['seed']}: {metric} "
              f"{record['val_accuracy']:.4f}" + (f", gap {record['gap']:+.4f}" if "gap" in record else "")
              + f" ({record['seconds']:.1f} s)", flush=True)

    return on_run


def _write_outputs(results: dict[str, Any], found: list[Any], verdicts: list[Any], min_effect: float) -> None:
    from pipeline.ablation.plot import effects_figure
    from pipeline.atomic import replace_dir_atomic

    with replace_dir_atomic(ABLATE_DIR) as out_dir:
        _write(out_dir, results, verdicts)
        rates = ", each side at its best rate" if results["rates"] else ""
        effects_figure(found, results["metric"], results["best_values"], out_dir / FIGURE_FILE.name, min_effect,
                       title=f"Ablation of trial {results['trial_id']}: {len(results['seeds'])} seeds (at most) x "
                             f"{results['epochs']} epochs{rates}")


def _summary(found: list[Any], seconds: float, metric: str) -> dict[str, float]:
    """The ablation run's metrics: each effect's mean, interval and p-value, and the time taken."""
    summary = {}
    for effect in found:
        key = f"{effect['dimension']}_{effect['value']}"
        summary |= {f"effect_{key}": effect[metric]["mean"], f"ci_low_{key}": effect[metric]["ci_low"],
                    f"ci_high_{key}": effect[metric]["ci_high"], f"p_{key}": effect[metric]["p_value"]}
    summary["seconds"] = seconds
    return summary


def _print_findings(found: list[Any], verdicts: list[Any], metric: str) -> None:
    from pipeline.ablation.stats import describe

    for effect in found:
        print(f"  {effect['dimension']}={effect['value']}: {describe(effect[metric], metric)}"
              + (" (clear)" if effect["clear"] else ""))
    for verdict in verdicts:
        print(f"  {verdict.question}: {verdict.statement}")


@contextmanager
def _runner(params, meta: dict[str, Any], run_log: Any) -> Iterator[Any]:  # noqa: ANN001 - pipeline.config.Params
    """What trains the runs for the whole stage (``.run(variants, seeds, epochs, on_run) -> records``, then
    ``.release()``): ``ablate.workers`` worker processes, or (1) this process; either way TensorFlow starts
    once and each graph is traced once."""
    if params.ablate.workers > 1:
        from pipeline.ablation.workers import WorkerPool

        with WorkerPool(params.ablate.workers, search_space=params.search_space.model_dump(mode="json"),
                        data_dir=str(paths.PROCESSED_DIR), tracking=run_log.child_settings(),
                        precision=params.precision) as pool:
            yield pool
        return
    from pipeline.ablation.runs import Splits, Trainer, model_builder
    from pipeline.data.store import load_split
    from pipeline.model.precision import resolve_precision

    data = Splits(*load_split(paths.PROCESSED_DIR, "train"), *load_split(paths.PROCESSED_DIR, "validation"),
                  *load_split(paths.PROCESSED_DIR, "test"))
    precision = resolve_precision(params.precision)
    trainer = Trainer(lambda epochs: model_builder(params.search_space, meta["input_shape"], meta["num_classes"],
                                                   epochs, precision), data, tracker=run_log)
    try:
        yield trainer
    finally:
        trainer.close()
