"""What one ``tf.function`` per step saves a trial, against Keras' own nested steps (issue 21.4).

``pipeline.model.training.one_graph_steps`` gives a fresh model training and evaluation steps that
are one ``tf.function`` each; Keras nests the step in a second function. Whole searches vary by
more than this change on a shared 2-core VM (BENCHMARKS.md §10), so this compares in one process,
in pairs: the same configuration fitted with each kind of step, one after the other, the order
alternating by round, on the digits splits the pipeline makes (seed 42). Per fit: CPU and wall
seconds of build + fit, the first epoch's extra time over the median later epoch (the tracing),
the median later epoch; the paired differences (one graph minus Keras') are summarized with a
sign count. The fits must end with the same validation accuracy in every pair (the same ops).

    python bench/one_graph_steps.py --out bench/results/one_graph_steps.json
    python bench/one_graph_steps.py --smoke
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "one_graph_steps"
ARMS = ("one_graph", "keras")
# The recipe and three other families / optimizers of the default space: their graphs differ in size.
VARIANTS = ({}, {"architecture": "resnet"}, {"architecture": "plain", "batch_norm": False},
            {"architecture": "separable", "optimizer": "sgd"})


def fit_once(arm: str, space: Any, values: dict[str, Any], splits: dict[str, Any], epochs: int) -> dict[str, float]:
    import keras
    import numpy as np

    from pipeline.model import training
    from pipeline.model.hypermodel import CNNHyperModel, hyperparameters_from_values

    class EpochClock(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.wall, self.cpu = [time.perf_counter()], [time.process_time()]

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())

    original = training.one_graph_steps
    if arm == "keras":
        training.one_graph_steps = lambda model: None
    try:
        keras.backend.clear_session(free_memory=False)
        gc.collect()
        (x, y), (x_val, y_val) = splits["train"], splits["validation"]
        hypermodel = CNNHyperModel(space, tuple(x.shape[1:]), 10, seed=1, total_epochs=epochs)
        hp = hyperparameters_from_values(space, values)
        wall, cpu = time.perf_counter(), time.process_time()
        model = hypermodel.build(hp)
        clock = EpochClock()
        history = hypermodel.fit(hp, model, x, y, validation_data=(x_val, y_val), epochs=epochs, callbacks=[clock])
    finally:
        training.one_graph_steps = original
    epoch_cpu = list(np.diff(clock.cpu))
    epoch_wall = list(np.diff(clock.wall))
    steady_cpu = statistics.median(epoch_cpu[1:])
    return {"fit_cpu": time.process_time() - cpu, "fit_wall": time.perf_counter() - wall,
            "first_extra_cpu": epoch_cpu[0] - steady_cpu, "steady_epoch_cpu": steady_cpu,
            "steady_epoch_wall": statistics.median(epoch_wall[1:]),
            "val_accuracy": float(history.history["val_accuracy"][-1])}


def summarize(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for key in ("fit_cpu", "fit_wall", "first_extra_cpu", "steady_epoch_cpu", "steady_epoch_wall"):
        diffs = [p["one_graph"][key] - p["keras"][key] for p in pairs]
        out[key] = {"keras_median": statistics.median(p["keras"][key] for p in pairs),
                    "one_graph_median": statistics.median(p["one_graph"][key] for p in pairs),
                    "paired_difference_median": statistics.median(diffs),
                    "paired_difference_mean": statistics.fmean(diffs),
                    "one_graph_lower": sum(d < 0 for d in diffs), "pairs": len(diffs)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--rounds", type=int, default=6, help="pairs per configuration (default 6)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per fit (default 5)")
    args = parser.parse_args()
    common.quiet_tensorflow()
    rounds, epochs, variants = (1, 2, VARIANTS[:2]) if args.smoke else (args.rounds, args.epochs, VARIANTS)
    env = common.environment()

    from pipeline.config import load_params

    params = load_params(common.REPO / "params.yaml")
    recipe = dict(params.tune.initial_points[0])
    recipe.update(reg_strength=1e-4, weight_decay=1e-4)  # keys the recipe leaves to the search
    splits = common.digits_splits()
    configurations = [{**recipe, **variant} for variant in variants]
    for values in configurations:  # warm-up: TensorFlow's one-off costs out of the first pair
        for arm in ARMS:
            fit_once(arm, params.search_space, values, splits, epochs)
    pairs = []
    for index in range(rounds):
        for values in configurations:
            order = ARMS if index % 2 == 0 else ARMS[::-1]
            fits = {arm: fit_once(arm, params.search_space, values, splits, epochs) for arm in order}
            pairs.append({"round": index, "architecture": values["architecture"], "first": order[0], **fits})
            print(f"round {index} {values['architecture']}: " + ", ".join(
                f"{arm} fit {fits[arm]['fit_cpu']:.3f} s CPU" for arm in ARMS), flush=True)
    same = all(p["one_graph"]["val_accuracy"] == p["keras"]["val_accuracy"] for p in pairs)
    summary = summarize(pairs)
    for key, row in summary.items():
        print(f"{key}: Keras {row['keras_median']:.3f}, one graph {row['one_graph_median']:.3f}, paired difference "
              f"median {row['paired_difference_median']:+.3f} s (lower in {row['one_graph_lower']} of {row['pairs']})")
    print(f"same validation accuracy in every pair: {same}")
    common.write_result(NAME, args, env, {"commit": common.git_commit(), "epochs": epochs, "rounds": rounds,
                                          "configurations": configurations, "same_val_accuracy": same,
                                          "summary": summary, "pairs": pairs})
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
