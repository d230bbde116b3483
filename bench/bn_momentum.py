"""Batch norm's momentum on the task suite: the recipe's validation accuracy per epoch, Keras' 0.99 vs 0.9.

Keras starts BatchNormalization's moving statistics at mean 0 / variance 1 and, with its default
momentum 0.99, averages the batch statistics over ~100 steps. A Hyperband rung of one epoch on a few
thousand images is only ~60 steps, so at inference a configuration with batch norm is judged with
statistics that are still mostly that start. This benchmark trains the shipped recipe
(``tune.initial_points[0]``, which uses batch norm) exactly as a search trial trains it
(``CNNHyperModel.build`` and ``.fit``, the annealing horizon ``tune.max_epochs``) on every task of
``bench/tasks.py`` at its full size, split by the pipeline's own ``preprocess`` (seed 42), once per
momentum and seed, and records the validation accuracy after every epoch. The momentum is
``pipeline.model.architectures.BN_MOMENTUM``, set per run. Validation decides; the test accuracy
after the last epoch is only reported.

    python bench/bn_momentum.py                                  # every task, 0.99 vs 0.9, seeds 0 and 1
    python bench/bn_momentum.py --tasks counting,digits --momenta 0.99,0.9,0.95
    python bench/bn_momentum.py --smoke                          # seconds: digits subset, 2 epochs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import search_suite as suite  # noqa: E402

NAME = "bn_momentum"
MOMENTA = (0.99, 0.9)
SEEDS = (0, 1)
READ_AT = (1, 3)  # epochs read besides the last: Hyperband's first rungs at max_epochs 9, factor 3


def train_recipe(task: str, momentum: float, seed: int, epochs: int, splits: dict[str, Any],
                 recipe: dict[str, Any], params: Any) -> dict[str, Any]:
    """One run: the recipe at ``momentum``; validation accuracy per epoch, test after the last."""
    import keras
    import keras_tuner

    import pipeline.model.architectures as architectures
    from pipeline.model.hypermodel import CNNHyperModel

    (x, y), validation, (x_test, y_test) = splits["train"], splits["validation"], splits["test"]
    scores: list[float] = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            scores.append(float((logs or {})["val_accuracy"]))

    keras.backend.clear_session()
    default = architectures.BN_MOMENTUM
    architectures.BN_MOMENTUM = momentum
    try:
        hypermodel = CNNHyperModel(params.search_space, x.shape[1:], int(y.max()) + 1, seed=seed,
                                   total_epochs=epochs)
        hp = keras_tuner.HyperParameters()
        hp.values.update(recipe)
        model = hypermodel.build(hp)
        started = time.perf_counter()
        hypermodel.fit(hp, model, x, y, validation_data=validation, epochs=epochs, callbacks=[Record()])
        seconds = time.perf_counter() - started
    finally:
        architectures.BN_MOMENTUM = default
    test = float(model.evaluate(x_test, y_test, verbose=0)[1])
    return {"task": task, "momentum": momentum, "seed": seed, "validation_by_epoch": scores, "test_last": test,
            "seconds": round(seconds, 1)}


def summarize(runs: list[dict[str, Any]], epochs: int) -> list[dict[str, Any]]:
    """Per task and momentum: mean validation accuracy over the seeds after each epoch read."""
    rows = []
    for task in dict.fromkeys(r["task"] for r in runs):
        for momentum in dict.fromkeys(r["momentum"] for r in runs):
            mine = [r for r in runs if r["task"] == task and r["momentum"] == momentum]
            if not mine:
                continue
            row = {"task": task, "momentum": momentum, "seeds": len(mine)}
            for at in (*READ_AT, epochs):
                if at <= epochs:
                    scores = [r["validation_by_epoch"][at - 1] for r in mine]
                    row[f"validation_at_{at}"] = round(statistics.mean(scores), 4)
            row["test_last"] = round(statistics.mean(r["test_last"] for r in mine), 4)
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], epochs: int) -> str:
    reads = [at for at in (*READ_AT, epochs) if at <= epochs]
    header = ["task", "momentum", *[f"val @{at}" for at in reads], f"test @{epochs} (report only)"]
    table = [[r["task"], r["momentum"], *[f"{r[f'validation_at_{at}']:.3f}" for at in reads], f"{r['test_last']:.3f}"]
             for r in rows]
    return common.markdown_table(header, table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(parser)
    parser.add_argument("--tasks", help="comma-separated subset of bench/tasks.py's tasks (default: all)")
    parser.add_argument("--momenta", default=",".join(str(m) for m in MOMENTA), help="comma-separated momenta")
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="seeds 0..N-1")
    args = parser.parse_args(argv)
    common.quiet_tensorflow()
    from pipeline.config import parse_params

    known = list(suite.suite_tasks())
    tasks = suite.parse_list(args.tasks, known, "tasks")
    momenta = [float(m) for m in args.momenta.split(",")]
    raw = suite.raw_params("quick")  # params.yaml's search space and recipe
    params = parse_params(raw)
    epochs = 2 if args.smoke else int(params.tune.max_epochs)
    if args.smoke:
        tasks, args.seeds = ["digits"], 1
    recipe = dict(params.tune.initial_points[0])
    env = common.environment()
    runs = []
    for task in tasks:
        splits, _ = suite.task_splits(task, "smoke" if args.smoke else "full")
        for momentum in momenta:
            for seed in range(args.seeds):
                run = train_recipe(task, momentum, seed, epochs, splits, recipe, params)
                print(f"{task} momentum {momentum} seed {seed}: validation by epoch "
                      f"{[round(s, 3) for s in run['validation_by_epoch']]} ({run['seconds']} s)", flush=True)
                runs.append(run)
    rows = summarize(runs, epochs)
    print(markdown(rows, epochs))
    common.write_result(NAME, args, env, {"commit": common.git_commit(), "epochs": epochs, "recipe": recipe,
                                          "momenta": momenta, "seeds": args.seeds, "summary": rows, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
