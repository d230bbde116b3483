"""Image files are read by their real range: the same picture in 8-bit and in every other common mode
(16-bit grey, palette, RGBA, grey+alpha, CMYK) gives the same array (issue: 16-bit PNGs were clipped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.images import read_image

SIZE = (12, 10)


def picture() -> np.ndarray:
    """An 8-bit grey picture with the whole range in it: a gradient with a bright square."""
    rng = np.random.default_rng(0)
    grey = np.linspace(0, 255, SIZE[0] * SIZE[1]).reshape(SIZE)
    grey[3:7, 2:6] = 250
    return np.clip(grey + rng.integers(-3, 4, SIZE), 0, 255).astype(np.uint8)


def save(tmp_path: Path, name: str, image: Image.Image) -> Path:
    path = tmp_path / name
    image.save(path)
    return path


def variants(tmp_path: Path, grey: np.ndarray) -> dict[str, Path]:
    base = Image.fromarray(grey, mode="L")
    rgb = base.convert("RGB")
    opaque = np.full_like(grey, 255)
    return {
        "16-bit grey": save(tmp_path, "g16.png", Image.fromarray(grey.astype(np.uint16) * 257)),
        "palette": save(tmp_path, "p.png", rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)),
        "RGBA": save(tmp_path, "rgba.png", Image.fromarray(np.dstack([grey, grey, grey, opaque]), mode="RGBA")),
        "grey+alpha": save(tmp_path, "la.png", Image.fromarray(np.dstack([grey, opaque]), mode="LA")),
        "CMYK": save(tmp_path, "cmyk.tif", rgb.convert("CMYK")),
    }


@pytest.mark.parametrize("color_mode", ["grayscale", "rgb"])
def test_every_mode_reads_like_the_8_bit_picture(tmp_path: Path, color_mode: str) -> None:
    grey = picture()
    reference = read_image(save(tmp_path, "g8.png", Image.fromarray(grey, mode="L")), SIZE, color_mode)
    assert reference.max() > 240  # the picture spans the range, so clipping would show
    for name, path in variants(tmp_path, grey).items():
        array = read_image(path, SIZE, color_mode)
        assert array.shape == reference.shape, name
        # a palette quantizes to its colours; every other mode is exact to rounding
        tolerance = 8.0 if name == "palette" else 1.0
        assert np.abs(array - reference).max() <= tolerance, f"{name}: {np.abs(array - reference).max()}"
        # 16-bit used to be clipped: most pixels at 255
        assert (array >= 254.5).mean() < 0.2, name


def test_transparent_pixels_read_as_black(tmp_path: Path) -> None:
    white = np.full((*SIZE, 3), 255, np.uint8)
    alpha = np.zeros(SIZE, np.uint8)
    alpha[:, : SIZE[1] // 2] = 255  # left half opaque white, right half transparent white
    path = save(tmp_path, "half.png", Image.fromarray(np.dstack([white, alpha]), mode="RGBA"))
    array = read_image(path, SIZE, "grayscale")[..., 0]
    assert array[:, 0].min() == 255 and array[:, -1].max() == 0


def test_32_bit_images_are_refused_with_the_reason(tmp_path: Path) -> None:
    path = save(tmp_path, "f.tif", Image.fromarray(np.ones(SIZE, np.float32), mode="F"))
    with pytest.raises(ValueError, match="32-bit"):
        read_image(path, SIZE, "grayscale")
