"""predict: registered champion (or a .keras file) on generated PNG files and folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_params
from test_registry_model import GOOD_LR, prepare_data, train_and_evaluate

from pipeline.cli import main


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_predict_folder_with_champion(project: Path, make_images, capsys: pytest.CaptureFixture[str]) -> None:
    prepare_data(project)
    train_and_evaluate(project, GOOD_LR)
    assert main(["register"]) == 0
    assert main(["promote"]) == 0
    images = make_images(project / "new", {"batch": 4}, size=(16, 16))
    capsys.readouterr()

    assert main(["predict", "--top", "2", str(images)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("# models:/digits-cnn@champion")
    rows = [line.split("\t") for line in lines[1:]]
    assert [Path(r[0]).name for r in rows] == [f"batch_{i:03d}.png" for i in range(4)]
    for row in rows:
        assert len(row) == 5 and row[1] in {str(i) for i in range(10)} and row[3] in {str(i) for i in range(10)}
        assert 1.0 >= float(row[2]) >= float(row[4]) >= 0.0

    one = images / "batch" / "batch_000.png"
    assert main(["predict", "--model", "models/model.keras", str(one)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[1].split("\t")[0] == str(one)

    assert main(["predict", "--model", "models:/digits-cnn@nope", str(one)]) == 2
    errors = error_lines(capsys.readouterr().err)
    assert errors == ["error: model models:/digits-cnn@nope: registered model 'digits-cnn' has no alias 'nope'; "
                      "its aliases: challenger (v1), champion (v1)"]
    assert main(["predict", "--model", "models:/other@champion", str(one)]) == 2
    assert "no registered model named 'other'" in error_lines(capsys.readouterr().err)[0]
    assert main(["predict", str(project / "missing.png")]) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {project / 'missing.png'}: no such file or folder"]

    # one bad file in a folder: the others are still predicted, the bad one named, exit 2
    (images / "batch" / "batch_002.png").write_bytes(b"not a png")
    assert main(["predict", "--model", "models/model.keras", str(images)]) == 2
    captured = capsys.readouterr()
    predicted = [Path(line.split("\t")[0]).name for line in captured.out.strip().splitlines()[1:]]
    assert predicted == ["batch_000.png", "batch_001.png", "batch_003.png"]
    assert [e.split(": unreadable")[0] for e in error_lines(captured.err)] == [
        f"error: {images / 'batch' / 'batch_002.png'}"]


def test_promote_refuses_a_model_for_other_input_shapes(project: Path, make_images,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    prepare_data(project)
    train_and_evaluate(project, GOOD_LR, epochs=1)
    assert main(["register"]) == 0
    # the data changes to 6x6 images: the 8x8 challenger cannot be scored on it
    make_images(project / "raw", {"dark": 10, "light": 10}, size=(6, 6))
    write_params(project, data={"source": "images", "images_dir": "raw", "image_size": [6, 6], "max_samples": None})
    assert main(["preprocess"]) == 0
    capsys.readouterr()
    assert main(["promote"]) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "expects input (8, 8, 1)" in errors[0] and "(6, 6, 1)" in errors[0]


def test_raw_input_model_gets_unnormalized_images(project: Path, make_images,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The self-contained model and its inner, normalized-input network agree through predict."""
    from pipeline.evaluation.model_io import load_model_file
    from pipeline.model.export import takes_raw_input

    prepare_data(project)
    train_and_evaluate(project, GOOD_LR, epochs=1)
    model = load_model_file(project / "models/model.keras")
    assert takes_raw_input(model)
    model.layers[-1].save(project / "inner.keras")  # the trained network alone: normalized input
    images = make_images(project / "new", {"batch": 3}, size=(8, 8))
    capsys.readouterr()
    outputs = []
    for file in ("models/model.keras", "inner.keras"):
        assert main(["predict", "--model", file, "--top", "3", str(images)]) == 0
        outputs.append([line.split("\t")[1:] for line in capsys.readouterr().out.strip().splitlines()[1:]])
    assert len(outputs[0]) == 3
    for raw_row, normalized_row in zip(*outputs, strict=True):
        assert raw_row[0::2] == normalized_row[0::2]
        assert [float(v) for v in raw_row[1::2]] == pytest.approx([float(v) for v in normalized_row[1::2]], abs=2e-4)
