"""The fixed cost per trial and the setup share, computed from a hand-made trials.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline.tuning.fixed_cost import fixed_cost, fixed_cost_of


def write_trials(path: Path, rows: list[dict[str, object]]) -> Path:
    columns = ["trial_id", "status", "epochs_trained", "seconds", "trial_seconds"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_intercept_slope_and_share_of_an_exact_line() -> None:
    # 2 s fixed + 0.5 s per epoch: 4 trials of 1, 1, 3, 9 epochs
    epochs = [1, 1, 3, 9]
    seconds = [2 + 0.5 * e for e in epochs]
    out = fixed_cost(seconds, epochs)
    assert out["fixed_seconds_per_trial"] == pytest.approx(2.0)
    assert out["seconds_per_epoch"] == pytest.approx(0.5)
    # 4 x 2 s of setup in 8 + 7 s
    assert out["setup_share"] == pytest.approx(8 / 15, abs=1e-4)
    # with the search's wall time: everything but 14 epochs x 0.5 s is setup
    assert fixed_cost(seconds, epochs, wall_seconds=20.0)["setup_share_of_wall"] == pytest.approx(1 - 7 / 20)


def test_least_squares_with_noise_matches_numpy() -> None:
    np = pytest.importorskip("numpy")
    epochs = [1, 1, 1, 3, 3, 9, 2, 4]
    seconds = [2.3, 1.9, 2.1, 3.2, 2.8, 5.9, 2.2, 4.1]
    slope, intercept = np.polyfit(epochs, seconds, 1)
    out = fixed_cost(seconds, epochs)
    assert out["fixed_seconds_per_trial"] == pytest.approx(intercept, abs=1e-4)
    assert out["seconds_per_epoch"] == pytest.approx(slope, abs=1e-4)
    assert out["setup_share"] == pytest.approx(len(epochs) * intercept / sum(seconds), abs=1e-4)


def test_trials_of_one_length_leave_the_intercept_unknown() -> None:
    out = fixed_cost([3.0, 3.2], [3, 3])
    assert out["fixed_seconds_per_trial"] is None and out["setup_share"] is None
    with pytest.raises(ValueError):
        fixed_cost([1.0], [1, 2])


def test_file_uses_the_trials_wall_time_and_skips_untrained_trials(tmp_path: Path) -> None:
    rows = [
        {"trial_id": "0000", "status": "FINISHED", "epochs_trained": 9, "seconds": 4.0, "trial_seconds": 5.0},
        {"trial_id": "0001", "status": "FINISHED", "epochs_trained": 1, "seconds": 1.0, "trial_seconds": 1.0},
        {"trial_id": "0002", "status": "FINISHED", "epochs_trained": 3, "seconds": 2.0, "trial_seconds": 2.0},
        # failed before its first epoch: no epochs, not on the line
        {"trial_id": "0003", "status": "FAILED", "epochs_trained": 0, "seconds": 0.0, "trial_seconds": 0.7},
    ]
    out = fixed_cost_of(write_trials(tmp_path / "trials.csv", rows))
    assert out["basis"] == "trial_seconds"
    assert out["trials"] == 3 and out["epochs"] == 13
    assert out["fixed_seconds_per_trial"] == pytest.approx(0.5)
    assert out["seconds_per_epoch"] == pytest.approx(0.5)


def test_an_older_file_falls_back_to_the_epochs_seconds(tmp_path: Path) -> None:
    rows = [{"trial_id": str(i), "status": "FINISHED", "epochs_trained": e, "seconds": 1 + 0.25 * e,
             "trial_seconds": ""} for i, e in enumerate([1, 3, 9])]
    out = fixed_cost_of(write_trials(tmp_path / "trials.csv", rows))
    assert out["basis"] == "seconds"
    assert out["fixed_seconds_per_trial"] == pytest.approx(1.0)


def test_metrics_from_trial_records_match_the_file(tmp_path: Path) -> None:
    from pipeline.tuning.fixed_cost import fixed_cost_metrics
    from pipeline.tuning.records import TrialRecord
    from pipeline.tuning.results import trial_rows, write_trials_csv

    records = []
    for i, (epochs, span) in enumerate([(1, 1.5), (3, 2.6), (9, 5.4), (1, 1.3)]):
        record = TrialRecord(trial_id=f"{i:04d}", status="FINISHED", score=0.5, trial_seconds=span,
                             history=[{"epoch": e, "val_accuracy": 0.5} for e in range(epochs)], seconds=span / 2)
        records.append(record)
    records.append(TrialRecord(trial_id="0004", status="FAILED"))  # no epoch: left out
    write_trials_csv(tmp_path / "trials.csv", trial_rows(records, "val_accuracy", []), [])
    from_file = fixed_cost_of(tmp_path / "trials.csv")
    metrics = fixed_cost_metrics(records)
    assert metrics == {"fixed_seconds_per_trial": from_file["fixed_seconds_per_trial"],
                       "setup_share": from_file["setup_share"]}
    assert 0 < metrics["setup_share"] < 1
    assert fixed_cost_metrics([records[0]]) == {}  # one trial: no line to fit


def test_under_data_fidelity_an_epoch_counts_by_the_rows_it_trained() -> None:
    from pipeline.tuning.fixed_cost import fixed_cost_metrics
    from pipeline.tuning.records import TrialRecord

    # 2 s of setup, 10 s per full-data epoch; low rungs train 1/9 and 1/3 of the 9,000 rows
    records = [TrialRecord(trial_id=f"{i:04d}", status="FINISHED", score=0.5, train_rows=rows,
                           trial_seconds=2.0 + 10.0 * epochs * rows / 9000,
                           history=[{"epoch": e} for e in range(epochs)])
               for i, (epochs, rows) in enumerate([(1, 1000), (1, 1000), (3, 3000), (6, 9000), (9, 9000)])]
    share = 5 * 2.0 / sum(r.trial_seconds for r in records)
    assert fixed_cost_metrics(records) == {"fixed_seconds_per_trial": pytest.approx(2.0),
                                           "setup_share": pytest.approx(share, abs=1e-4)}
    # read by epochs alone, the cheap rungs make setup look negative (seen on 60,000 images: -39 s): left out
    for record in records:
        record.train_rows = None
    by_epochs = fixed_cost([r.trial_seconds for r in records], [r.epochs_trained for r in records])
    assert by_epochs["note"].startswith("not measurable")
    assert "fixed_seconds_per_trial" not in fixed_cost_metrics(records)


def test_a_negative_intercept_is_not_reported_as_a_fixed_cost() -> None:
    # the trials of a 60,000-image search (results/tune/trials.csv, BENCHMARKS §11): 3-epoch screens of
    # models 36-125 s apart, 6-epoch continuations, 1-epoch screens on a ninth of the rows
    work = [1.0] * 6 + [6.0, 6.0] + [1 / 9] * 9
    seconds = [94.0, 35.7, 124.7, 87.4, 106.4, 103.0, 560.7, 566.6, 13.4, 17.0, 10.3, 6.3, 5.5, 4.2, 6.5, 9.5, 6.1]
    out = fixed_cost(seconds, work, wall_seconds=1758.0)
    assert out["fixed_seconds_per_trial"] is None and out["setup_share"] is None and out["setup_share_of_wall"] is None
    assert out["seconds_per_epoch"] == pytest.approx(94.2, abs=0.1) and out["note"].startswith("not measurable")
