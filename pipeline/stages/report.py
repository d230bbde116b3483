"""DVC stage ``report``: the trials of ``tune`` -> results/report/ (and the search's tracked run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline.atomic import replace_dir_atomic
from pipeline.paths import ABLATE_RESULTS_FILE as RESULTS_FILE
from pipeline.paths import ABLATE_VERDICTS_FILE as VERDICTS_FILE
from pipeline.paths import (
    BEST_HPARAMS_FILE,
    EVALUATE_METRICS_FILE,
    META_FILE,
    REPORT_DIR,
    TRAIN_RUN_FILE,
    TRIALS_FILE,
    TUNE_HISTORY_FILE,
    TUNE_METRICS_FILE,
)


def run(params, args: argparse.Namespace | None = None) -> int:  # noqa: ANN001 - pipeline.config.Params
    from pipeline.report import Inputs, build_report
    from pipeline.report.load import load_json
    from pipeline.tracking.api import tracker_for

    evidence, ablation = _ablation_evidence(load_json(BEST_HPARAMS_FILE))

    # Built in a fresh folder that replaces results/report/ only when complete: a failure halfway
    # leaves the previous report whole instead of new pictures beside an old report.md.
    with replace_dir_atomic(REPORT_DIR) as out_dir:
        summary = build_report(
            params.search_space,
            min_trials=params.report.min_trials_per_choice,
            top_trials=params.report.top_trials,
            inputs=Inputs(TRIALS_FILE, TUNE_HISTORY_FILE, BEST_HPARAMS_FILE, META_FILE, evidence=evidence,
                          ablation=ablation, evaluation=EVALUATE_METRICS_FILE,
                          tune_metrics=TUNE_METRICS_FILE, train_run=TRAIN_RUN_FILE),
            out_dir=out_dir,
            default_objective=params.tune.objective,
            seed=params.seed,
        )
    print(f"report: {summary['trials']} trials ({summary['finished']} finished, {summary['failed']} failed) "
          f"-> {REPORT_DIR}/report.html")
    for answer in summary["answers"].values():
        print(f"  {answer['question']} {answer['verdict']}")
    # a store that cannot be reached is a warning here: the report itself is written
    tracker_for(params).log_report(load_json(BEST_HPARAMS_FILE).get("search_run_id"), REPORT_DIR)
    return 0



def _ablation_evidence(best: dict[str, Any]) -> tuple[tuple[Path, ...], Path]:
    """The ablation's verdicts as evidence when they are the ablation of this search's best configuration."""
    from pipeline.ablation.section import load_results, stale_reason

    results = load_results(RESULTS_FILE)
    if not results or not results.get("enabled"):
        return (), RESULTS_FILE
    stale = stale_reason(results, best)
    if stale:
        print(f"warning: {RESULTS_FILE}: {stale}; its verdicts are left out: run `python -m pipeline ablate` "
              "(or `dvc repro`) again", file=sys.stderr)
        return (), RESULTS_FILE
    return (VERDICTS_FILE,), RESULTS_FILE
