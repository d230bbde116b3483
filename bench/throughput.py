"""Training throughput inside a tuner trial vs a plain ``model.fit`` of the same model.

One fixed configuration of params.yaml's space (a VGG-style CNN with batch norm, dropout, L2,
Adam and a cosine schedule, batch 32) is trained on the digits training split in several ways,
interleaved, each for a few epochs on a freshly built model:

  plain            model.fit(x, y, batch_size, validation_data) with no callbacks
  plain+schedule   ... + the pipeline's per-batch ScheduleCallback
  plain+nanguard   ... + the pipeline's NanGuard (TerminateOnNaN, reads the loss every batch)
  plain+pipeline   ... + all callbacks a trial gets: schedule, EarlyStopping, NanGuard, EpochRecorder
  tuner_trial      the real path: the pipeline's tuner (make_tuner + run_search, NullTracker) running
                   one trial through KerasTuner's run_trial, with its checkpointing callback

Images/second = training images / the training part of each epoch (epoch start to the start of
its validation pass); the first epoch (graph tracing) is left out. Target: tuner_trial / plain >= 0.9.

    python bench/throughput.py                # 3 interleaved repeats x 6 epochs
    python bench/throughput.py --smoke        # seconds: 300 images, 2 epochs, 1 repeat
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "throughput"
TARGET = 0.9
VARIANTS = ("plain", "plain+schedule", "plain+nanguard", "plain+pipeline", "tuner_trial")
CONFIG = {
    "architecture": "vgg", "blocks": 2, "filters": 32, "kernel_size": 3, "head": "gap", "dense_units": 64,
    "activation": "relu", "init": "he_normal", "regularizer": "l2", "reg_strength": 1.0e-4, "dropout": 0.25,
    "batch_norm": True, "weight_decay": 1.0e-4, "optimizer": "adam", "momentum": 0.9,
    "learning_rate": 1.0e-3, "lr_schedule": "cosine", "label_smoothing": 0.0, "batch_size": 32,
}
# smoke: the smallest model of the space, so that graph tracing takes a second, not ten
SMOKE_CONFIG = {**CONFIG, "architecture": "plain", "blocks": 1, "filters": 8, "dense_units": 0,
                "batch_norm": False, "regularizer": "none", "dropout": 0.0, "batch_size": 64}


def make_timer() -> Any:
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Seconds of each epoch's training part (to validation start) and of the whole epoch."""

        def __init__(self) -> None:
            super().__init__()
            self.train_seconds: list[float] = []
            self.epoch_seconds: list[float] = []
            self._start = self._train_end = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._start, self._train_end = time.perf_counter(), 0.0

        def on_test_begin(self, logs: dict | None = None) -> None:
            if self._start and not self._train_end:
                self._train_end = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            now = time.perf_counter()
            self.train_seconds.append((self._train_end or now) - self._start)
            self.epoch_seconds.append(now - self._start)
            self._start = 0.0

    return EpochTimer()


def bench_params(config: dict, epochs: int, workdir: Path) -> Any:
    from pipeline.config import parse_params

    return parse_params({"seed": 0, "search_space": config, "tune": {
        "tuner": "random", "max_trials": 1, "max_epochs": epochs, "early_stopping_patience": epochs + 1,
        "directory": str(workdir), "resume": False}})


def run_variant(variant: str, config: dict, params: Any, data: dict, epochs: int) -> Any:
    import keras

    from pipeline.model.hypermodel import CNNHyperModel, hyperparameters_from_values
    from pipeline.model.schedules import ScheduleCallback
    from pipeline.model.space import declare_hyperparameters
    from pipeline.tuning.callbacks import EpochRecorder, NanGuard
    from pipeline.tuning.records import TrialRecord
    from pipeline.tuning.search import run_search
    from pipeline.tuning.tracker import NullTracker
    from pipeline.tuning.tuners import make_tuner

    (x, y), (x_val, y_val) = data["train"], data["validation"]
    timer = make_timer()
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)

    class TimedHyperModel(CNNHyperModel):
        def fit(self, hp: Any, model: Any, *args: Any, callbacks: list | None = None, **kwargs: Any) -> Any:
            return super().fit(hp, model, *args, callbacks=[*(callbacks or []), timer], **kwargs)

    hypermodel = TimedHyperModel(space=params.search_space, input_shape=x.shape[1:], num_classes=10, seed=0,
                                 total_epochs=epochs)
    if variant == "tuner_trial":
        tuner = make_tuner(params.tune, hypermodel, seed=0, project_name=f"trial-{time.monotonic_ns()}")
        with open(os.devnull, "w") as devnull:
            run_search(tuner, params.tune, (x, y, x_val, y_val), stream=devnull)
        return timer
    hp = hyperparameters_from_values(params.search_space, dict(config))
    model = hypermodel.build(hp)
    batch = int(config["batch_size"])
    steps = -(-len(x) // batch)
    callbacks: list[Any] = []
    if variant in ("plain+schedule", "plain+pipeline"):
        # the trial's full values (fixed keys included), as fit_model hands them to the schedule
        callbacks.append(ScheduleCallback(declare_hyperparameters(params.search_space, hp), total_epochs=epochs,
                                          steps_per_epoch=steps))
    if variant == "plain+pipeline":
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=epochs + 1))
    if variant in ("plain+nanguard", "plain+pipeline"):
        callbacks.append(NanGuard())
    if variant == "plain+pipeline":
        callbacks.append(EpochRecorder(TrialRecord(trial_id="0"), NullTracker(), None))
    model.fit(x, y, batch_size=batch, epochs=epochs, validation_data=(x_val, y_val), verbose=0,
              callbacks=[*callbacks, timer])
    return timer


def hook_costs(config: dict, params: Any, data: dict, epochs: int, calls: int) -> dict[str, float]:
    """Microseconds per batch of each per-batch hook the pipeline adds, called directly (load-robust).

    NanGuard's cost includes Keras' ``pythonify_logs`` (tensor -> float per metric): Keras 3
    dispatches ``on_train_batch_end`` to a background thread unless some callback overrides
    ``on_batch_end``/``on_train_batch_end``, so a NanGuard makes that conversion synchronous.
    """
    import keras
    from keras.src.utils.python_utils import pythonify_logs

    from pipeline.model.hypermodel import CNNHyperModel, hyperparameters_from_values
    from pipeline.model.schedules import ScheduleCallback
    from pipeline.model.space import declare_hyperparameters
    from pipeline.tuning.callbacks import NanGuard

    x = data["train"][0]
    hypermodel = CNNHyperModel(space=params.search_space, input_shape=x.shape[1:], num_classes=10, seed=0,
                               total_epochs=epochs)
    hp = hyperparameters_from_values(params.search_space, dict(config))
    model = hypermodel.build(hp)
    steps = -(-len(x) // int(config["batch_size"]))
    schedule = ScheduleCallback(declare_hyperparameters(params.search_space, hp), total_epochs=epochs,
                                steps_per_epoch=steps)
    guard = NanGuard()
    for cb in (schedule, guard):
        cb.set_model(model)
        cb.set_params({"steps": steps, "epochs": epochs})
    schedule.on_epoch_begin(1)
    guard.on_epoch_begin(1)
    logs = {"loss": keras.ops.convert_to_tensor(0.5), "accuracy": keras.ops.convert_to_tensor(0.5)}
    out = {}
    start = time.perf_counter()
    for i in range(calls):
        schedule.on_train_batch_begin(i % steps)
    out["schedule_on_train_batch_begin_us"] = 1e6 * (time.perf_counter() - start) / calls
    start = time.perf_counter()
    for i in range(calls):
        guard.on_batch_end(i, pythonify_logs(logs))
    out["nanguard_on_batch_end_incl_pythonify_us"] = 1e6 * (time.perf_counter() - start) / calls
    out["steps_per_epoch"] = steps
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3; smoke 1)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run, the first is dropped (default 6)")
    args = parser.parse_args()
    env = common.environment()
    common.quiet_tensorflow()
    repeats = args.repeats or (1 if args.smoke else 3)
    epochs = args.epochs or (2 if args.smoke else 6)
    data = common.digits_splits(seed=42, max_samples=300 if args.smoke else None)
    n_train = len(data["train"][1])
    train_s: dict[str, list[float]] = {v: [] for v in VARIANTS}
    epoch_s: dict[str, list[float]] = {v: [] for v in VARIANTS}
    config = SMOKE_CONFIG if args.smoke else CONFIG
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        params = bench_params(config, epochs, Path(tmp))
        if not args.smoke:
            run_variant("plain", config, params, data, epochs)  # warm-up: imports, first traces
        for repeat in range(repeats):
            order = VARIANTS[repeat % len(VARIANTS):] + VARIANTS[:repeat % len(VARIANTS)]  # rotate
            for variant in order:
                timer = run_variant(variant, config, params, data, epochs)
                train_s[variant] += timer.train_seconds[1:]
                epoch_s[variant] += timer.epoch_seconds[1:]
                print(f"repeat {repeat} {variant:15s} "
                      f"{n_train / statistics.median(timer.train_seconds[1:]):8.0f} images/s", flush=True)
    hooks = hook_costs(config, params, data, epochs, calls=200 if args.smoke else 3000)
    variants = {}
    for v in VARIANTS:
        med = statistics.median(train_s[v])
        variants[v] = {"images_per_second": n_train / med, "median_train_seconds_per_epoch": med,
                       "median_epoch_seconds_incl_validation": statistics.median(epoch_s[v]),
                       "train_seconds": train_s[v], "epoch_seconds": epoch_s[v]}
    plain = variants["plain"]["images_per_second"]
    for v in VARIANTS:
        variants[v]["ratio_to_plain"] = variants[v]["images_per_second"] / plain
    ratio = variants["tuner_trial"]["ratio_to_plain"]
    result = {"config": config, "train_images": n_train, "epochs_per_run": epochs, "repeats": repeats,
              "ratio": ratio, "target": TARGET, "met": ratio >= TARGET, "variants": variants,
              "per_batch_hooks": hooks}
    plain_step_us = 1e6 * variants["plain"]["median_train_seconds_per_epoch"] / hooks["steps_per_epoch"]
    result["plain_step_us"] = plain_step_us
    rows = [[v, f"{variants[v]['images_per_second']:.0f}", f"{variants[v]['ratio_to_plain']:.3f}",
             f"{1000 * variants[v]['median_train_seconds_per_epoch']:.0f}",
             f"{1000 * variants[v]['median_epoch_seconds_incl_validation']:.0f}"] for v in VARIANTS]
    body = (f"### Training throughput: tuner trial / plain fit = **{ratio:.3f}** (target >= {TARGET}: "
            f"{'met' if ratio >= TARGET else 'MISSED'})\n\n"
            + common.markdown_table(["variant", "images/s (training)", "ratio to plain", "ms/epoch training",
                                     "ms/epoch incl. validation"], rows)
            + f"\n\n{n_train} digits training images, batch {config['batch_size']}, median over {repeats} "
              f"interleaved repeats x {epochs - 1} timed epochs (first epoch of each run dropped).\n\n"
              f"Per-batch hooks, called directly: ScheduleCallback.on_train_batch_begin "
              f"{hooks['schedule_on_train_batch_begin_us']:.0f} µs, NanGuard.on_batch_end with Keras' log "
              f"conversion {hooks['nanguard_on_batch_end_incl_pythonify_us']:.0f} µs, against a plain training step "
              f"of {plain_step_us:.0f} µs ({hooks['steps_per_epoch']} steps per epoch).")
    common.write_result(NAME, args, env, result, body)
    print(f"throughput: tuner trial / plain fit = {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
