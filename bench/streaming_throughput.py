"""Training throughput of the streaming input path (memory-mapped splits) vs a plain ``model.fit`` on arrays.

The first images of the 60,000-image grey folder (``bench/big_folders.py``: big_grey, 28x28),
standardized and written as the processed ``.npy`` files, are trained on in three ways,
interleaved, each for a few epochs on a freshly built model of the same configuration:

  plain    model.fit(x, y, batch_size, shuffle=True, validation_data) on in-memory arrays (Keras' own)
  memory   the pipeline's loop (``fit_model``) on the arrays loaded in memory
  stream   ``fit_model`` on the same files memory-mapped (``load_split(..., mmap=True)``): training
           and validation batches read from the page cache batch by batch, never copied whole

Images/second = training images / the training part of each epoch (epoch start to the start of
its validation pass); the first epoch (graph tracing) is left out. Target: stream / plain >= 0.9.
The input paths alone (batches drawn, no model) are timed too: on a shared machine training
rates move by a quarter between runs, while the input path's own rate bounds what it can cost.

    python bench/streaming_throughput.py            # 3,000 images, 2 interleaved repeats x 3 epochs
    python bench/streaming_throughput.py --smoke    # seconds: 300 images, 2 epochs, 1 repeat
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import big_folders  # noqa: E402
import common  # noqa: E402
import throughput  # noqa: E402

NAME = "streaming_throughput"
TARGET = 0.9
VARIANTS = ("plain", "memory", "stream")
CONFIG = throughput.CONFIG  # the VGG-style configuration of bench/throughput.py, batch 32
SMOKE_CONFIG = throughput.SMOKE_CONFIG


def write_processed(directory: Path, count: int) -> None:
    """The first ``count`` big_grey images, standardized on the training part, as ``data/processed`` files."""
    import numpy as np

    from pipeline.data.normalize import fit_normalization, normalize_in_place
    from pipeline.data.store import save_split

    x, y = big_folders.make_big_arrays("big_grey", count)
    x = x.astype(np.float32)
    n_val = count // 6
    stats = fit_normalization(x[n_val:], "standardize")
    normalize_in_place(x, stats)
    save_split(directory, "validation", x[:n_val], y[:n_val])
    save_split(directory, "train", x[n_val:], y[n_val:])


def run_variant(variant: str, config: dict, params: Any, directory: Path, epochs: int) -> Any:
    import keras

    from pipeline.data.store import load_split
    from pipeline.model.hypermodel import CNNHyperModel, hyperparameters_from_values
    from pipeline.model.space import declare_hyperparameters
    from pipeline.model.training import fit_model

    mmap = variant == "stream"
    x, y = load_split(directory, "train", mmap=mmap)
    x_val, y_val = load_split(directory, "validation", mmap=mmap)
    timer = throughput.make_timer()
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    hypermodel = CNNHyperModel(space=params.search_space, input_shape=x.shape[1:], num_classes=10, seed=0,
                               total_epochs=epochs)
    hp = hyperparameters_from_values(params.search_space, dict(config))
    model = hypermodel.build(hp)
    if variant == "plain":
        model.fit(x, y, batch_size=int(config["batch_size"]), epochs=epochs, shuffle=True,
                  validation_data=(x_val, y_val), verbose=0, callbacks=[timer])
    else:
        fit_model(model, declare_hyperparameters(params.search_space, hp), x, y, validation_data=(x_val, y_val),
                  epochs=epochs, seed=0, callbacks=[timer])
    return timer, len(x)


def input_rates(config: dict, directory: Path, epochs: int) -> dict[str, float]:
    """Images/second of each input path alone (no model): the batches of ``epochs`` epochs drawn and dropped.

    Training is noisy on a shared machine; the input path's own rate, against the training rate,
    says how much of an epoch it can cost at most.
    """
    import time

    import tensorflow as tf

    from pipeline.data.store import load_split
    from pipeline.model.training import epoch_batches

    batch = int(config["batch_size"])
    rates = {}
    for variant in VARIANTS:
        x, y = load_split(directory, "train", mmap=variant == "stream")
        if variant == "plain":  # Keras' own adapter for in-memory arrays, as model.fit builds it
            from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

            dataset = ArrayDataAdapter(x, y, batch_size=batch, shuffle=True).get_tf_dataset().repeat(epochs)
        else:
            dataset = epoch_batches(x, y, batch, seed=0, initial_epoch=0, epochs=epochs)
        start = time.perf_counter()
        for _ in dataset:
            pass
        rates[variant] = len(x) * epochs / (time.perf_counter() - start)
        del dataset
        tf.keras.backend.clear_session()
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--images", type=int, default=None, help="images (train + 1/6 validation; default 3600)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 2; smoke 1)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run, the first is dropped (default 3)")
    args = parser.parse_args()
    for flag, value in (("--images", args.images), ("--repeats", args.repeats), ("--epochs", args.epochs)):
        if value is not None and value < (2 if flag == "--epochs" else 1):
            print(f"{flag}: {value}; allowed: a positive number (--epochs at least 2)", file=sys.stderr)
            return 2
    env = common.environment()
    common.quiet_tensorflow()
    images = args.images or (360 if args.smoke else 3600)
    repeats = args.repeats or (1 if args.smoke else 2)
    epochs = args.epochs or (2 if args.smoke else 3)
    config = SMOKE_CONFIG if args.smoke else CONFIG
    train_s: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix=f"bench-{NAME}-") as tmp:
        directory = Path(tmp) / "processed"
        write_processed(directory, images)
        params = throughput.bench_params(config, epochs, Path(tmp) / "tuner")
        if not args.smoke:
            run_variant("plain", config, params, directory, 2)  # warm-up: imports, first traces
        for repeat in range(repeats):
            order = VARIANTS[repeat % len(VARIANTS):] + VARIANTS[:repeat % len(VARIANTS)]  # rotate
            for variant in order:
                timer, n_train = run_variant(variant, config, params, directory, epochs)
                train_s[variant] += timer.train_seconds[1:]
                print(f"repeat {repeat} {variant:7s} {n_train / statistics.median(timer.train_seconds[1:]):7.0f} "
                      "images/s", flush=True)
        rates = input_rates(config, directory, epochs)
    variants = {v: {"images_per_second": n_train / statistics.median(train_s[v]),
                    "median_train_seconds_per_epoch": statistics.median(train_s[v]), "train_seconds": train_s[v]}
                for v in VARIANTS}
    plain = variants["plain"]["images_per_second"]
    for v in VARIANTS:
        variants[v]["ratio_to_plain"] = variants[v]["images_per_second"] / plain
    ratio = variants["stream"]["ratio_to_plain"]
    result = {"config": config, "data": "big_grey (bench/big_folders.py), first images, 28x28 grey",
              "train_images": n_train, "epochs_per_run": epochs, "repeats": repeats, "ratio": ratio,
              "target": TARGET, "met": ratio >= TARGET, "variants": variants, "under_load": True,
              "input_only_images_per_second": rates}
    # No BENCHMARKS.md section: the raw result is the record (section=None).
    common.write_result(NAME, args, env, result, None)
    print(f"{NAME}: stream / plain fit = {ratio:.3f} (memory / plain = {variants['memory']['ratio_to_plain']:.3f}); "
          f"target >= {TARGET}: {'met' if ratio >= TARGET else 'MISSED'} (measured under load); input path alone: "
          + ", ".join(f"{v} {r:.0f}" for v, r in rates.items()) + " images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
