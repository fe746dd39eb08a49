"""OME-Zarr, NGFF 0.4 and 0.5 (convflow/io/_ome.py): levels, axes, scale, and pyramids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from io_contract import SYNC, ReaderWriterContract, chunk_digest

from convflow.errors import ArgumentError, InputFormatError
from convflow.io import open_input, write_output

AXES_04 = [
    {"name": "z", "type": "space", "unit": "micrometer"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]


def write_ngff(path: str, data: np.ndarray, version: str, axes: list[Any], scale: list[float]) -> str:
    """Write a two-level NGFF image with zarr alone: level "0" is `data`, "1" its 2x subsample."""
    transforms = [
        [{"type": "scale", "scale": scale}, {"type": "translation", "translation": [0.0, 5.0, -2.0]}],
        [{"type": "scale", "scale": [scale[0], scale[1] * 2, scale[2] * 2]}],
    ]
    datasets = [{"path": str(i), "coordinateTransformations": t} for i, t in enumerate(transforms)]
    multiscale = {"axes": axes, "datasets": datasets}
    if version == "0.4":
        attributes = {"multiscales": [{"version": "0.4", **multiscale}]}
    else:
        attributes = {"ome": {"version": "0.5", "multiscales": [multiscale]}}
    group = zarr.open_group(path, mode="w", zarr_format=2 if version == "0.4" else 3, attributes=attributes)
    group.create_array("0", data=data, chunks=(1, 10, 12))
    group.create_array("1", data=data[:, ::2, ::2].copy(), chunks=(1, 10, 12))
    return path


class TestOmeZarr04(ReaderWriterContract):
    output_format = "ome-zarr"
    suffix = ".ome.zarr"

    def write_native(self, folder: Path, data: np.ndarray) -> str:
        return write_ngff(str(folder / "native.ome.zarr"), data, "0.4", AXES_04, [2.0, 0.5, 0.5])

    def stored_blocks(self, out: str) -> int:
        stored = len(chunk_digest(Path(out) / "0"))
        assert 0 < stored < 8
        return stored

    def test_level_scale_translation_and_units(self, tmp_path: Path, data: np.ndarray) -> None:
        path = self.write_native(tmp_path, data)
        full, half = open_input(path), open_input(path, dataset="1")
        assert full.dataset == "0"
        assert full.scale == (2.0, 0.5, 0.5)
        assert full.translation == (0.0, 5.0, -2.0)
        assert full.units == ("micrometer",) * 3
        assert half.shape == (4, 10, 12)
        assert half.scale == (2.0, 1.0, 1.0)

    def test_missing_level_is_named_with_the_levels(self, tmp_path: Path, data: np.ndarray) -> None:
        with pytest.raises(InputFormatError, match=r"no resolution level '2'\. .*Levels: 0, 1"):
            open_input(self.write_native(tmp_path, data), dataset="2")

    def test_metadata_is_carried_from_the_input(self, tmp_path: Path, data: np.ndarray) -> None:
        source = open_input(self.write_native(tmp_path, data))
        out = self.out(tmp_path)
        write_output(source.array, out, format=self.output_format, inputs=[source])
        back = open_input(out)
        assert (back.axes, back.scale, back.translation, back.units) == (
            source.axes,
            source.scale,
            source.translation,
            source.units,
        )

    def test_written_metadata_is_ngff(self, tmp_path: Path, data: np.ndarray) -> None:
        out = self.out(tmp_path)
        write_output(data[np.newaxis], out, format=self.output_format, axes="czyx", scale=(1, 3, 1, 1))
        attrs = self.group_attrs(out)
        assert attrs["axes"] == [
            {"name": "c", "type": "channel"},
            {"name": "z", "type": "space"},
            {"name": "y", "type": "space"},
            {"name": "x", "type": "space"},
        ]
        assert attrs["datasets"] == [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 3.0, 1.0, 1.0]}]}
        ]

    def group_attrs(self, out: str) -> dict[str, Any]:
        """Return the multiscale entry as stored on disk."""
        attrs = json.loads((Path(out) / ".zattrs").read_text())
        assert attrs["multiscales"][0]["version"] == "0.4"
        return attrs["multiscales"][0]

    def test_pyramid_levels_are_2x_means(self, tmp_path: Path, data: np.ndarray) -> None:
        out = self.out(tmp_path)
        values = data.astype(np.float32)
        write_output(values, out, format=self.output_format, pyramid_levels=3, scale=(1.0, 0.5, 0.5))
        level1 = open_input(out, dataset="1")
        expected = values.reshape(2, 2, 10, 2, 12, 2).mean(axis=(1, 3, 5))
        np.testing.assert_allclose(level1.array.compute(**SYNC), expected, rtol=1e-6)
        assert level1.scale == (2.0, 1.0, 1.0)
        assert level1.translation == (0.5, 0.25, 0.25)
        assert open_input(out, dataset="2").shape == (1, 5, 6)

    def test_axes_ngff_cannot_hold_are_rejected(self, tmp_path: Path, data: np.ndarray) -> None:
        with pytest.raises(ArgumentError, match=r"axes='zyxc' cannot be written as OME-Zarr: NGFF needs"):
            write_output(data[..., np.newaxis], self.out(tmp_path), format=self.output_format, axes="zyxc")

    def test_axes_named_by_type_become_letters(self, tmp_path: Path, data: np.ndarray) -> None:
        axes = [
            {"name": "depth", "type": "space"},
            {"name": "row", "type": "space"},
            {"name": "col", "type": "space"},
        ]
        path = write_ngff(str(tmp_path / "named.ome.zarr"), data, "0.4", axes, [1.0, 1.0, 1.0])
        assert open_input(path).axes == "zyx"


class TestOmeZarr05(TestOmeZarr04):
    output_format = "ome-zarr-v0.5"

    def write_native(self, folder: Path, data: np.ndarray) -> str:
        return write_ngff(str(folder / "native.ome.zarr"), data, "0.5", AXES_04, [2.0, 0.5, 0.5])

    def group_attrs(self, out: str) -> dict[str, Any]:
        attrs = json.loads((Path(out) / "zarr.json").read_text())["attributes"]
        assert attrs["ome"]["version"] == "0.5"
        return attrs["ome"]["multiscales"][0]

    def test_level_arrays_carry_dimension_names(self, tmp_path: Path, data: np.ndarray) -> None:
        out = self.out(tmp_path)
        write_output(data, out, format=self.output_format)
        assert zarr.open_array(f"{out}/0").metadata.dimension_names == ("z", "y", "x")
