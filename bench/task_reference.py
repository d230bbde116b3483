"""Reference search per task of the suite (``bench/tasks.py``): which configuration wins where, and by how much.

Per task, the shipped recipe (``tune.initial_points[0]`` of params.yaml) and a fixed set of
other configurations (hand-picked variants of the recipe that should win on some task, plus
random draws from ``search_space`` with a fixed seed) are trained exactly as a search trial
trains them: ``CNNHyperModel.build`` and ``.fit`` (``fit_model``) with params.yaml's search
space, for ``tune.max_epochs`` epochs, the annealing horizon being those epochs. The data go
through the pipeline's own ``preprocess`` (stratified split 0.15/0.15 with seed 42,
standardization fitted on train). Only the training split is capped (``--train-images``,
stratified, the pipeline's ``stratified_subsample``) to keep the run within minutes on
2 cores; validation and test keep the full task's split.

Protocol: every configuration is trained with seed 0 (screening); the recipe and the best
other configuration by that validation accuracy are trained again with seed 1. The
best configuration is the finalist with the highest mean validation accuracy (last epoch's
weights, as ``train`` keeps them); test accuracy is only reported. The margin over the
recipe is given on validation and test with a paired bootstrap 95% interval over the
images (per image: correct in how many of the two seeds). A task's own test split is small
(45 images for tiny_noisy), so every model is also scored on ``FRESH_IMAGES`` new draws of
the task's generator (images in no version of the task; not for digits and shifted_digits,
which have no independent new images): "clear" means a validation margin of at least
``CLEAR_MARGIN`` and a fresh-test interval (test where there is no fresh set) above zero.

    python bench/task_reference.py                 # full: 7.5 min on 2 idle cores (AMD EPYC, 2026-12-06)
    python bench/task_reference.py --quick         # quick task sizes, 3 epochs, 4 configurations: minutes
    python bench/task_reference.py --smoke         # seconds: two small tasks, one epoch
    python bench/task_reference.py --tasks shapes,counting --out /tmp/x.json
    python bench/task_reference.py --tasks counting --merge        # rerun one task, keep the others
    python bench/task_reference.py --combine a.json b.json         # task groups run apart, as one result
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import tasks as suite  # noqa: E402

NAME = "task_reference"
CLEAR_MARGIN = 0.03  # validation accuracy: about twice the seed-to-seed spread of the recipe on these tasks
TRAIN_IMAGES = 400
FINALISTS = 1  # besides the recipe
SEEDS = (0, 1)
RANDOM_CONFIGS = 1  # random draws from this space are mostly hopeless (zeros init, plain SGD at 1e-4)
BOOTSTRAP = 2000
FRESH_IMAGES, FRESH_QUICK = 1500, 300  # new draws of a generated task: a test set large enough to tell
RANDOM_SEED = 2021  # of the random configurations: the same set for every task
# Variants of the recipe (keys not given are the recipe's); each is what should win on some task.
HAND_PICKED: dict[str, dict[str, Any]] = {
    "recipe+translate": {"augment_translate": 0.125},
    "recipe+l2+dropout0.5": {"regularizer": "l2", "reg_strength": 1.0e-3, "dropout": 0.5},
    "recipe-dropout": {"dropout": 0.0},
    "resnet": {"architecture": "resnet"},
    "plain adam 0.01": {"architecture": "plain", "optimizer": "adam", "learning_rate": 0.01, "lr_schedule": "cosine",
                        "dropout": 0.0},
    "vgg adam no-bn": {"batch_norm": False, "optimizer": "adam", "learning_rate": 0.001, "lr_schedule": "constant",
                       "init": "glorot_uniform"},
}
QUICK_PICKED = ("recipe+translate", "resnet", "plain adam 0.01")
RECIPE = "recipe"


def params_yaml() -> dict[str, Any]:
    from pipeline.strict_yaml import load_yaml

    return load_yaml((common.REPO / "params.yaml").read_text(), "params.yaml") or {}


def space_defaults(space: Any) -> dict[str, Any]:
    """Every search-space key at its KerasTuner default (a fixed key's value; a range's minimum; the first choice)."""
    import keras_tuner

    from pipeline.model.space import declare_hyperparameters

    return declare_hyperparameters(space, keras_tuner.HyperParameters())


def random_configs(space: Any, count: int, seed: int) -> dict[str, dict[str, Any]]:
    """``count`` configurations drawn uniformly from the searched keys (log ranges log-uniformly)."""
    from pipeline.hparams import Choice, Range
    from pipeline.model.space import space_items

    rng = np.random.default_rng(seed)
    configs = {}
    for index in range(count):
        values: dict[str, Any] = {}
        for name, spec in space_items(space):
            if isinstance(spec, Choice) and spec.searched:
                values[name] = spec.choices[int(rng.integers(len(spec.choices)))]
            elif isinstance(spec, Range):
                if spec.step is not None and spec.sampling == "linear":
                    grid = np.arange(spec.min, spec.max + 1e-9, spec.step)
                    values[name] = float(grid[int(rng.integers(len(grid)))])
                elif spec.sampling == "log":
                    values[name] = float(math.exp(rng.uniform(math.log(spec.min), math.log(spec.max))))
                else:
                    values[name] = float(rng.uniform(spec.min, spec.max))
        configs[f"random {index}"] = values
    return configs


def configurations(raw: dict[str, Any], space: Any, quick: bool, smoke: bool) -> dict[str, dict[str, Any]]:
    """name -> the values this reference trains (missing keys take ``space_defaults``)."""
    recipe = dict(raw["tune"]["initial_points"][0])
    picked = QUICK_PICKED[:1] if smoke else QUICK_PICKED if quick else tuple(HAND_PICKED)
    configs = {RECIPE: recipe, **{name: {**recipe, **HAND_PICKED[name]} for name in picked}}
    if not (quick or smoke):
        configs.update(random_configs(space, RANDOM_CONFIGS, RANDOM_SEED))
    defaults = space_defaults(space)
    return {name: {**defaults, **values} for name, values in configs.items()}


def task_data(name: str, params: Any, quick: bool, train_images: int | None) -> tuple[dict[str, Any], dict]:
    """The task's splits exactly as ``preprocess`` makes them, the training split capped (stratified)."""
    from pipeline.data.normalize import apply_normalization
    from pipeline.data.sources import RawDataset, load_digits
    from pipeline.data.split import stratified_subsample
    from pipeline.stages.preprocess import preprocess

    if name == suite.DIGITS:
        raw = load_digits()
        if quick:
            raw.x, raw.y = raw.x[:suite.TASKS[name].quick_images], raw.y[:suite.TASKS[name].quick_images]
    else:
        # The arrays the image-folder source reads back from write_task's PNGs, in its order (class by class,
        # files by name), so the split is the one `data.source: images` gets (tests/test_tasks.py).
        x, y = suite.make_arrays(name, quick=quick)
        order = np.argsort(y, kind="stable")
        raw = RawDataset(x=x[order].astype(np.float32), y=y[order], class_names=list(suite.class_names(name)),
                         pixel_max=255.0, dataset=name)
    splits, meta = preprocess(params, raw)
    x_train, y_train = splits["train"]
    keep = stratified_subsample(y_train, train_images, params.seed)
    splits["train"] = (np.ascontiguousarray(x_train[keep]), y_train[keep])
    fresh = suite.fresh_arrays(name, FRESH_QUICK if quick else FRESH_IMAGES)
    if fresh is not None:  # normalized with the training split's statistics, as prediction does
        splits["fresh"] = (apply_normalization(fresh[0].astype(np.float32), meta["normalization"]),
                           fresh[1].astype(np.int32))
    return splits, meta


def train_one(values: dict[str, Any], seed: int, params: Any, splits: dict, meta: dict, epochs: int) -> dict[str, Any]:
    """One configuration trained as a search trial trains it; the last epoch's weights are scored."""
    import keras

    from pipeline.model.hypermodel import CNNHyperModel
    from pipeline.model.space import hyperparameters_from_values

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    (x, y), (x_val, y_val), (x_test, y_test) = splits["train"], splits["validation"], splits["test"]
    hypermodel = CNNHyperModel(space=params.search_space, input_shape=tuple(meta["input_shape"]),
                               num_classes=meta["num_classes"], seed=seed, total_epochs=epochs)
    hp = hyperparameters_from_values(params.search_space, values)
    start = time.perf_counter()
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, x, y, validation_data=(x_val, y_val), epochs=epochs)
    seconds = time.perf_counter() - start

    def correct(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        proba = keras.ops.convert_to_numpy(model.predict(xs, batch_size=256, verbose=0))
        return (np.argmax(proba, axis=1) == ys) & np.all(np.isfinite(proba), axis=1)

    val_correct, test_correct = correct(x_val, y_val), correct(x_test, y_test)
    curve = [float(v) if math.isfinite(v) else 0.0 for v in history.history.get("val_accuracy", [])]
    out = {"seed": seed, "val": float(val_correct.mean()), "test": float(test_correct.mean()),
           "best_epoch_val": max(curve, default=0.0), "seconds": round(seconds, 2),
           "val_correct": val_correct, "test_correct": test_correct}
    if "fresh" in splits:
        out["fresh_correct"] = correct(*splits["fresh"])
        out["fresh"] = float(out["fresh_correct"].mean())
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` (per image) with a 95% percentile interval over resampled images."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(BOOTSTRAP, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high), "n": int(len(diff))}


def per_image(runs: list[dict[str, Any]], key: str) -> np.ndarray:
    """Per image: the share of this configuration's seeds that got it right."""
    return np.mean([r[key] for r in runs], axis=0)


def run_task(name: str, params: Any, configs: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    splits, meta = task_data(name, params, args.quick or args.smoke, args.train_images)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for config, values in configs.items():  # screening: every configuration, first seed
        runs[config].append(train_one(values, SEEDS[0], params, splits, meta, args.epochs))
        print(f"  {name} {config:24s} seed {SEEDS[0]}: val {runs[config][-1]['val']:.4f} "
              f"test {runs[config][-1]['test']:.4f} ({runs[config][-1]['seconds']:.0f} s)", flush=True)
    others = sorted((c for c in configs if c != RECIPE), key=lambda c: -runs[c][0]["val"])
    finalists = [RECIPE, *others[:args.finalists]]
    for config in finalists:  # the recipe and the best others: further seeds
        for seed in SEEDS[1:args.seeds]:
            runs[config].append(train_one(configs[config], seed, params, splits, meta, args.epochs))
            print(f"  {name} {config:24s} seed {seed}: val {runs[config][-1]['val']:.4f} "
                  f"test {runs[config][-1]['test']:.4f}", flush=True)
    rows = {c: {"val": statistics.fmean(r["val"] for r in rs), "test": statistics.fmean(r["test"] for r in rs),
                **({"fresh": statistics.fmean(r["fresh"] for r in rs)} if "fresh" in splits else {}),
                "seeds": len(rs), "finalist": c in finalists,
                "runs": [{k: v for k, v in r.items() if not k.endswith("_correct")} for r in rs]}
            for c, rs in runs.items()}
    best = max(finalists, key=lambda c: (rows[c]["val"], c == RECIPE))  # a tie keeps the recipe
    margin = {"val": paired_bootstrap(per_image(runs[best], "val_correct"), per_image(runs[RECIPE], "val_correct")),
              "test": paired_bootstrap(per_image(runs[best], "test_correct"),
                                       per_image(runs[RECIPE], "test_correct"))}
    if "fresh" in splits:
        margin["fresh"] = paired_bootstrap(per_image(runs[best], "fresh_correct"),
                                           per_image(runs[RECIPE], "fresh_correct"))
    judged = margin.get("fresh", margin["test"])  # the larger held-out sample where there is one
    clear = best != RECIPE and margin["val"]["mean"] >= CLEAR_MARGIN and judged["low"] > 0
    task = suite.TASKS[name]
    return {"task": name, "description": task.description, "image_size": list(task.image_size),
            "color_mode": task.color_mode, "classes": task.classes, "images": int(sum(meta["sizes"].values())),
            "epochs": args.epochs, "finalists": finalists,
            "sizes": {**meta["sizes"], "train": int(len(splits["train"][1])),
                      **({"fresh": int(len(splits["fresh"][1]))} if "fresh" in splits else {})},
            "configs": rows, "best": best,
            "best_values": {k: configs[best][k] for k in changed_keys(configs)}, "recipe": rows[RECIPE],
            "margin": margin, "recipe_beaten_clearly": clear, "seconds": round(time.perf_counter() - start, 1)}


def changed_keys(configs: dict[str, dict[str, Any]]) -> list[str]:
    """The keys on which the configurations differ (the others are the fixed part of the space)."""
    first = next(iter(configs.values()))
    return [k for k in first if any(c[k] != first[k] for c in configs.values())]


def section(result: dict[str, Any]) -> str:
    header = ["task", "size", "train/val/test/fresh", "best configuration (validation)",
              "recipe val / test / fresh", "best val / test / fresh", "margin val", "margin test (95% CI)",
              "margin fresh (95% CI)", "clear"]

    def interval(m: dict[str, float] | None) -> str:
        return "-" if m is None else f"{m['mean']:+.3f} [{m['low']:+.3f}, {m['high']:+.3f}]"

    def scores(row: dict[str, float]) -> str:
        fresh = f"{row['fresh']:.3f}" if "fresh" in row else "-"
        return f"{row['val']:.3f} / {row['test']:.3f} / {fresh}"

    rows = []
    for t in result["tasks"]:
        size = f"{'x'.join(map(str, t['image_size']))} {'grey' if t['color_mode'] == 'grayscale' else 'RGB'}"
        sizes = "/".join(str(t["sizes"].get(k, "-")) for k in ("train", "validation", "test", "fresh"))
        rows.append([t["task"], size, sizes, t["best"], scores(t["recipe"]), scores(t["configs"][t["best"]]),
                     f"{t['margin']['val']['mean']:+.3f}", interval(t["margin"]["test"]),
                     interval(t["margin"].get("fresh")), "yes" if t["recipe_beaten_clearly"] else "no"])
    beaten = sum(t["recipe_beaten_clearly"] for t in result["tasks"])
    winners = sorted({t["best"] for t in result["tasks"]})
    return (f"Each task's configurations trained as search trials ({result['epochs']} epochs, last weights; "
            "seed 0 for all, seed 1 for the recipe and the best other(s) by seed 0's validation); validation picks "
            "among those, test and fresh report.\n\n" + common.markdown_table(header, rows) +
            "\n\nfresh: new draws of the task's generator (in no split) for a test of a useful size; digits and "
            "shifted_digits have none. "
            f"The recipe is clearly beaten (validation margin >= {CLEAR_MARGIN}, fresh (else test) interval above "
            "0) on "
            f"{beaten} of {len(result['tasks'])} tasks; {len(winners)} different best configurations: "
            f"{', '.join(winners)}.")


def merged(path: Path, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``results`` plus the tasks of an earlier result at ``path`` not rerun now, in the suite's order."""
    earlier = json.loads(path.read_text())["tasks"] if path.is_file() else []
    return merged_lists(earlier, results)  # this run's entries replace earlier ones


def combine(args: argparse.Namespace) -> int:
    """Results run apart (say, task groups in two processes) as one: their tasks, settings and section."""
    parts = [json.loads(path.read_text()) for path in args.combine]
    tasks: list[dict[str, Any]] = []
    for part in parts:
        tasks = merged_lists(tasks, part["tasks"])
    last = parts[-1]
    keep = ("epochs", "train_images", "seeds", "finalists", "clear_margin", "quick", "configurations")
    result = {**{k: last[k] for k in keep}, "combined_from": [p["command"] for p in parts], "tasks": tasks,
              "recipe_beaten_clearly_on": [t["task"] for t in tasks if t["recipe_beaten_clearly"]],
              "distinct_best": sorted({t["best"] for t in tasks})}
    result["section"] = section(result)
    print(result["section"])
    common.write_result(NAME, args, last["environment"], result)
    return 0


def merged_lists(earlier: list[dict[str, Any]], later: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_task = {t["task"]: t for t in [*earlier, *later]}
    return [by_task[name] for name in suite.TASKS if name in by_task]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(parser)
    parser.add_argument("--quick", action="store_true", help="quick task sizes, 3 epochs, 4 configurations")
    parser.add_argument("--tasks", default=None, help=f"comma-separated subset of: {', '.join(suite.TASKS)}")
    parser.add_argument("--epochs", type=int, default=None, help="per run (default tune.max_epochs; quick 3)")
    parser.add_argument("--train-images", type=int, default=None,
                        help=f"cap on the training split per task (default {TRAIN_IMAGES})")
    parser.add_argument("--configs", default=None,
                        help="comma-separated subset of the configurations (the recipe always runs)")
    parser.add_argument("--finalists", type=int, default=None,
                        help=f"configurations besides the recipe that get the further seeds (default {FINALISTS})")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other tasks of the existing JSON (--out's), replacing those run now")
    parser.add_argument("--combine", nargs="+", type=Path, default=None, metavar="JSON",
                        help="train nothing: the tasks of these results (later files win) into --out's JSON")
    args = parser.parse_args(argv)
    chosen = list(suite.TASKS) if args.tasks is None else [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.smoke and args.tasks is None:
        chosen = ["tiny_noisy", "digits"]
    unknown = [t for t in chosen if t not in suite.TASKS]
    if unknown or not chosen:
        print(f"--tasks: unknown task(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(suite.TASKS)}",
              file=sys.stderr)
        return 2
    if args.combine:
        return combine(args)
    if args.quick and args.out is None:  # never overwrites the full run's result
        args.out = Path(tempfile.gettempdir()) / "bench-quick" / f"{NAME}.json"
    common.quiet_tensorflow()
    warnings.filterwarnings("ignore", category=UserWarning)
    from pipeline.config import parse_params

    raw = params_yaml()
    params = parse_params({**raw, "seed": 42, "data": {"source": "digits"}})
    args.epochs = args.epochs or (1 if args.smoke else 3 if args.quick else params.tune.max_epochs)
    args.train_images = args.train_images or (None if (args.quick or args.smoke) else TRAIN_IMAGES)
    args.seeds = 1 if args.smoke else len(SEEDS)
    if args.finalists is None:
        args.finalists = 0 if args.smoke else 1 if args.quick else FINALISTS
    configs = configurations(raw, params.search_space, args.quick, args.smoke)
    if args.configs is not None:
        wanted = [c.strip() for c in args.configs.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in configs]
        if unknown:
            print(f"--configs: unknown configuration(s) {', '.join(unknown)}; known: {', '.join(configs)}",
                  file=sys.stderr)
            return 2
        configs = {name: values for name, values in configs.items() if name == RECIPE or name in wanted}
    env = common.environment()
    results = []
    for name in chosen:
        print(f"{name}: {len(configs)} configurations, {args.epochs} epochs", flush=True)
        results.append(run_task(name, params, configs, args))
        t = results[-1]
        print(f"{name}: best {t['best']} val {t['configs'][t['best']]['val']:.4f}, recipe val {t['recipe']['val']:.4f}"
              f", margin test {t['margin']['test']['mean']:+.4f} ({t['seconds']:.0f} s)", flush=True)
    if args.merge:
        results = merged(common.output_path(NAME, args), results)
    result = {"epochs": args.epochs, "train_images": args.train_images, "seeds": list(SEEDS[:args.seeds]),
              "finalists": args.finalists, "clear_margin": CLEAR_MARGIN, "quick": bool(args.quick),
              "configurations": {name: {k: v[k] for k in changed_keys(configs)} for name, v in configs.items()},
              "tasks": results,
              "recipe_beaten_clearly_on": [t["task"] for t in results if t["recipe_beaten_clearly"]],
              "distinct_best": sorted({t["best"] for t in results})}
    result["section"] = section(result)
    print(result["section"])
    common.write_result(NAME, args, env, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
