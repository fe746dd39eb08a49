"""Tests for ``convflow preview`` and ``convflow run --preview`` (#7): the real command in subprocesses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image
from test_cli import PIPELINE_YAML, is_one_error_line, run_all

from convflow.config import load_config
from convflow.io import open_input
from convflow.pipeline import make_plan
from convflow.preview import Preview, image_preview, plan_preview
from convflow.preview._figure import figure_pixels


@pytest.fixture
def project(tmp_path: Path, rng: np.random.Generator) -> Path:
    """A folder with a 24 x 30 uint16 zarr input (8 x 8 chunks) and the pipeline as p.yaml."""
    data = (rng.random((24, 30)) * 1000).astype(np.uint16)
    array = zarr.create_array(str(tmp_path / "in.zarr"), shape=data.shape, chunks=(8, 8), dtype=data.dtype)
    array[...] = data
    (tmp_path / "p.yaml").write_text(PIPELINE_YAML)
    return tmp_path


def pixels(preview: Preview) -> tuple[int, int]:
    """The (height, width) `render` gives the picture of `preview`."""
    return figure_pixels(len(preview.rows), max(len(row) for row in preview.rows), title=preview.title)


def assert_picture(path: Path, size: tuple[int, int]) -> None:
    """`path` is a PNG of `size` (height, width) with something drawn on it."""
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        values = np.asarray(picture.convert("RGB"))
    assert values.shape[:2] == size
    # Panels with colour maps and colour bars: far more than a blank page's one colour.
    assert len(np.unique(values.reshape(-1, 3), axis=0)) > 50


def test_preview_draws_an_image_and_a_config_to_pictures_of_the_panel_grid(project):
    before = zarr.open_array(str(project / "in.zarr"))[...]
    image, default, crop = run_all(
        [
            ["preview", "in.zarr", "-o", "pictures/in.png"],
            ["preview", "p.yaml"],
            ["preview", "p.yaml", "--show", "crop", "--crop", "16", "-o", "crop.png"],
        ],
        project,
    )
    for result in (image, default, crop):
        assert result.returncode == 0, result.stderr
    assert image.stdout == "preview pictures/in.png\n"
    assert default.stdout == "preview preview.png\n"

    assert_picture(project / "pictures" / "in.png", pixels(image_preview(open_input(project / "in.zarr"))))
    plan = make_plan(load_config(project / "p.yaml"), strict=False)
    # Nothing is written yet, so 'auto' shows every stage on the crop: the input and four stages.
    assert_picture(project / "preview.png", pixels(plan_preview(plan)))
    assert len(plan_preview(plan).rows[0]) == 5
    assert_picture(project / "crop.png", pixels(plan_preview(plan, crop=16)))
    assert not (project / "out").exists()
    np.testing.assert_array_equal(zarr.open_array(str(project / "in.zarr"))[...], before)


def test_run_preview_draws_the_written_outputs_beside_the_first_output(project):
    (first,) = run_all([["run", "p.yaml", "--preview"]], project)
    assert first.returncode == 0, first.stderr
    picture = project / "out" / "p_preview.png"
    assert f"preview {picture}" in first.stdout
    plan = make_plan(load_config(project / "p.yaml"), strict=False)
    shown = plan_preview(plan, show="outputs")
    assert_picture(picture, pixels(shown))
    # The input beside the two outputs as stored.
    assert len(shown.rows[0]) == 3

    picture.unlink()
    done, again = run_all(
        [["run", "p.yaml", "--resume", "--preview"], ["preview", "p.yaml", "-o", "outputs.png"]], project
    )
    assert done.returncode == 0, done.stderr
    assert "nothing to do" in done.stdout
    assert_picture(picture, pixels(shown))
    assert again.returncode == 0, again.stderr
    # Every output written and complete: 'auto' now shows them rather than the crop.
    assert_picture(project / "outputs.png", pixels(shown))


def test_preview_mistakes_exit_2_with_one_line_naming_the_value(project):
    (project / "old.png").write_bytes(b"not a picture yet")
    results = run_all(
        [
            ["preview", "in.zarr", "-o", "in.tif"],
            ["preview", "missing.zarr"],
            ["preview", "p.yaml", "--show", "outputs", "-o", "o.png"],
            ["preview", "in.zarr", "--show", "crop", "-o", "c.png"],
            ["preview", "in.zarr", "-o", "old.png"],
        ],
        project,
    )
    suffix, missing, unwritten, crop_of_image, replaced = results
    for result, expected in [
        (suffix, "'in.tif'"),
        (missing, "missing.zarr"),
        (unwritten, "does not exist"),
        (crop_of_image, "'in.zarr'"),
    ]:
        assert result.returncode == 2, result.stderr
        assert is_one_error_line(result), result.stderr
        assert expected in result.stderr
    assert not (project / "in.tif").exists()
    assert not (project / "o.png").exists()
    # A picture that exists is replaced: a preview is redrawn whenever a config changes.
    assert replaced.returncode == 0, replaced.stderr
    assert_picture(project / "old.png", pixels(image_preview(open_input(project / "in.zarr"))))
