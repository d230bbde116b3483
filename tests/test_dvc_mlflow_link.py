"""DVC and MLflow point at each other: runs and versions carry the DVC experiment, DVC's metrics the run ids.

Also the DVC side of the outputs: which metrics `dvc metrics show` reads, the training-curve plots,
and that .gitignore lets the DVC metrics be committed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_registry_model import NAME, prepare_data, train_and_evaluate

from pipeline.cli import main

DVC_ENV = {"DVC_NO_ANALYTICS": "1"}


def dvc(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dvc", *args], cwd=project, env={**os.environ, **DVC_ENV}, text=True,
                          capture_output=True, timeout=300)


def git(project: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project, check=True, text=True, capture_output=True).stdout.strip()


def test_dvc_exp_run_names_the_experiment(dvc_project: Path) -> None:
    """The environment variables `context_tags` reads are the ones the installed DVC sets."""
    script = ("import json; from pipeline.tracking.context import context_tags; "
              "json.dump(context_tags(), open('context.json', 'w'))")
    (dvc_project / "dvc.yaml").write_text(json.dumps({"stages": {"context": {
        "cmd": f'{sys.executable} -c "{script}"', "metrics": [{"context.json": {"cache": False}}]}}}))
    git(dvc_project, "add", "-A")
    git(dvc_project, "commit", "-qm", "baseline")
    head = git(dvc_project, "rev-parse", "HEAD")

    result = dvc(dvc_project, "exp", "run", "-n", "linked-exp")
    assert result.returncode == 0, result.stderr
    assert json.loads((dvc_project / "context.json").read_text()) == {
        "dvc_experiment": "linked-exp", "dvc_baseline_rev": head}
    result = dvc(dvc_project, "repro", "-f")  # not an experiment: nothing to link
    assert result.returncode == 0, result.stderr
    assert json.loads((dvc_project / "context.json").read_text()) == {}


def test_search_trial_and_parent_runs(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from pipeline.tracking.runs import SearchRun

    monkeypatch.setenv("DVC_EXP_NAME", "exp-a")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0" * 40)
    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(uri)
    client.create_experiment("cnn-tuning")
    search = SearchRun.open(uri, "cnn-tuning", "hash-1", tuner="hyperband", resume=False, params={}, tags={})
    logger = search.trial_logger()
    for trial_id, accuracies in (("0000", [0.5, 0.7]), ("0001", [0.6, 0.9, 0.8])):
        run_id = logger.start_trial(trial_id, {"learning_rate": 0.01}, {"trial_id": trial_id})
        for epoch, accuracy in enumerate(accuracies):
            logger.log_epoch(run_id, epoch, {"val_accuracy": accuracy, "loss": 1 - accuracy,
                                             "learning_rate": 0.01 / (epoch + 1)})
        logger.end_trial(run_id, "FINISHED", {"score": max(accuracies)}, {})
    search.finish({"best_objective": 0.9, "trials": 2}, {"best_trial_id": "0001"}, [])

    parent = client.get_run(search.run_id)
    children = logger.trial_runs()
    for run in (parent, *children):
        assert run.data.tags["dvc_experiment"] == "exp-a" and run.data.tags["dvc_baseline_rev"] == "0" * 40
    for child in children:  # the learning rate: param = initial rate, metric `lr` = per epoch
        assert child.data.params["learning_rate"] == "0.01"
        assert "lr" in child.data.metrics and "learning_rate" not in child.data.metrics
    # the parent's row in the runs table: the best trial's numbers under the children's names
    best = next(c for c in children if c.data.tags["trial_id"] == "0001")
    assert parent.data.metrics["score"] == best.data.metrics["score"] == 0.9
    assert parent.data.metrics["val_accuracy"] == 0.8 and parent.data.metrics["lr"] == pytest.approx(0.01 / 3)
    # at the best trial's last epoch, so the parent's point in a chart sits on the end of that trial's curve
    assert [m.step for m in client.get_metric_history(search.run_id, "val_accuracy")] == [2]
    assert parent.data.metrics["best_objective"] == 0.9 and parent.data.metrics["trials"] == 2


def test_stages_link_runs_versions_and_dvc_metrics(dvc_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("DVC_EXP_NAME", "exp-b")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "1" * 40)
    prepare_data(dvc_project)
    train_and_evaluate(dvc_project, epochs=1)
    assert main(["register"]) == 0
    run_id = json.loads((dvc_project / "results/train/run.json").read_text())["run_id"]
    client = MlflowClient()
    assert client.get_run(run_id).data.tags["dvc_experiment"] == "exp-b"
    version_tags = client.get_model_version(NAME, "1").tags
    assert version_tags["dvc_experiment"] == "exp-b" and version_tags["dvc_baseline_rev"] == "1" * 40

    # dvc.yaml's metrics: evaluate's carries the MLflow run id (once, so its column has a short name)
    result = dvc(dvc_project, "metrics", "show", "--json")
    assert result.returncode == 0, result.stderr
    shown = next(iter(json.loads(result.stdout).values()))["data"]  # the workspace (no commit yet)
    evaluated = shown["results/evaluate/metrics.json"]["data"]
    registered = shown["results/register/model.json"]["data"]
    assert evaluated["mlflow_run_id"] == run_id and "mlflow_run_id" not in registered
    assert not set(evaluated) & set(registered)  # no name in two files: DVC would prefix the file to the column
    assert {"accuracy", "loss", "f1_macro", "generalization_gap"} <= set(evaluated)
    assert "f1_per_class" not in evaluated and registered["version"] == "1"

    # the training curves: loss and accuracy apart, train and validation together
    history = dvc_project / "results/train/history.csv"
    history.write_text("epoch,loss,accuracy,val_loss,val_accuracy,learning_rate\n"
                       "1,1.2,0.6,1.3,0.55,0.01\n2,0.8,0.8,0.9,0.75,0.01\n")
    result = dvc(dvc_project, "plots", "show", "--json")
    assert result.returncode == 0, result.stderr
    plots = json.loads(result.stdout)["data"]
    fields = {name: {row["field"] for row in plots[name][0]["content"]["data"]["values"]}
              for name in ("loss", "accuracy")}
    assert fields == {"loss": {"loss", "val_loss"}, "accuracy": {"accuracy", "val_accuracy"}}
    assert "results/train/history.csv" not in plots  # no third plot of the file's last column

    # what the README's flow commits after `dvc repro` is not ignored by git
    committed = ["results/evaluate/metrics.json", "results/register/model.json", "results/train/history.csv",
                 "results/train/run.json", "results/evaluate/confusion.csv", "results/tune/metrics.json"]
    ignored = subprocess.run(["git", "check-ignore", *committed], cwd=dvc_project, text=True, capture_output=True)
    assert ignored.stdout.strip() == ""
