"""Real DVC: `dvc repro tune` (preprocess + tune) in a temp git repo writes the tune outputs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import write_params
from tests.tune_fixtures import TINY_SPACE, child_runs


@pytest.mark.slow
def test_dvc_repro_tune_writes_outputs(dvc_project: Path) -> None:
    write_params(dvc_project, data={"max_samples": 200}, search_space=TINY_SPACE,
                 tune={"max_epochs": 2, "factor": 2}, mlflow={"experiment": "tune-test"})
    result = subprocess.run(["dvc", "repro", "tune"], cwd=dvc_project, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTHONPATH": str(dvc_project)})
    assert result.returncode == 0, result.stdout + result.stderr
    out = dvc_project / "results/tune"
    for name in ("best_hparams.json", "trials.csv", "history.csv", "summary.png", "metrics.json"):
        assert (out / name).is_file(), name
    best = json.loads((out / "best_hparams.json").read_text())
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert best["trial_id"] in {r["trial_id"] for r in rows}
    assert len(child_runs(os.environ["MLFLOW_TRACKING_URI"])) == len(rows)
    assert any(p.name.startswith("search-") for p in (dvc_project / ".tuner").iterdir())
