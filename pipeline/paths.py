"""Where stages read and write, relative to the repository root.

dvc.yaml names the same paths in its deps/outs; keep the two in step.
"""

from __future__ import annotations

from pathlib import Path

VALIDATED_STAMP = Path("results/validate/params.ok")  # stage validate's output, a dep of every stage

PROCESSED_DIR = Path("data/processed")
META_FILE = PROCESSED_DIR / "meta.json"

TUNE_DIR = Path("results/tune")
BEST_HPARAMS_FILE = TUNE_DIR / "best_hparams.json"
TRIALS_FILE = TUNE_DIR / "trials.csv"
TUNE_METRICS_FILE = TUNE_DIR / "metrics.json"
TUNE_HISTORY_FILE = TUNE_DIR / "history.csv"
SUMMARY_PLOT = TUNE_DIR / "summary.png"

MODEL_DIR = Path("models")
MODEL_FILE = MODEL_DIR / "model.keras"
TRAIN_DIR = Path("results/train")
HISTORY_FILE = TRAIN_DIR / "history.csv"
TRAIN_RUN_FILE = TRAIN_DIR / "run.json"

ABLATE_DIR = Path("results/ablate")
ABLATE_RESULTS_FILE = ABLATE_DIR / "results.json"
ABLATE_VERDICTS_FILE = ABLATE_DIR / "verdicts.json"
ABLATE_FIGURE = ABLATE_DIR / "effects.png"

EVALUATE_DIR = Path("results/evaluate")
EVALUATE_METRICS_FILE = EVALUATE_DIR / "metrics.json"
CONFUSION_CSV = EVALUATE_DIR / "confusion.csv"
CONFUSION_PNG = EVALUATE_DIR / "confusion.png"

REGISTER_DIR = Path("results/register")
REGISTERED_MODEL_FILE = REGISTER_DIR / "model.json"

REPORT_DIR = Path("results/report")


def repo_root(start: Path | None = None) -> Path:
    """The project root: the nearest folder above ``start`` holding params.yaml.

    A DVC queued/temp experiment runs in a copy under ``<repo>/.dvc/tmp/exps/``; the root
    of *that* copy is returned here, see ``pipeline.tracking`` for the shared store.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file():
            return folder
    return here
