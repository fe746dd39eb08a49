"""Globs of files (convflow/io/_glob.py): stacked in sorted order along a new leading batch axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from io_contract import SYNC, ReaderContract

from convflow.errors import ArgumentError, InputFormatError, InputNotFoundError
from convflow.io import describe, open_input, write_output


class TestTiffGlob(ReaderContract):
    """A folder of 2-d TIFF scans read as one (b, y, x) stack; the contract's volume is 4 scans."""

    suffix = ".tif"
    native_axes = "byx"

    def write_native(self, folder: Path, data: np.ndarray) -> str:
        (folder / "scans").mkdir()
        for index, plane in enumerate(data):
            tifffile.imwrite(folder / "scans" / f"scan_{index:02d}.tif", plane, metadata=None)
        return str(folder / "scans" / "scan_*.tif")

    def test_files_are_listed_in_stacking_order(self, tmp_path: Path, data: np.ndarray) -> None:
        image = open_input(self.write_native(tmp_path, data))
        assert [Path(f).name for f in image.files] == [f"scan_{i:02d}.tif" for i in range(4)]
        assert image.format == "glob"
        assert describe(image.path)["files"] == 4

    def test_each_file_is_a_block_along_the_batch_axis(self, tmp_path: Path, data: np.ndarray) -> None:
        image = open_input(self.write_native(tmp_path, data))
        assert image.chunks[0] == (1, 1, 1, 1)

    def test_axes_argument_overrides_and_is_checked(self, tmp_path: Path, data: np.ndarray) -> None:
        # The contract's test, for a glob: 'yx' names each file's axes (#13 item 6),
        # so the letters that fit no form are one too few for a file, or one too many.
        path = self.write_native(tmp_path, data)
        assert open_input(path, axes="TYX").axes == "tyx"
        assert open_input(path, axes="yx").axes == "byx"
        with pytest.raises(ArgumentError, match=r"axes='x' does not fit the glob.*into \(4, 20, 24\)"):
            open_input(path, axes="x")
        with pytest.raises(ArgumentError, match=r"axes='czyx' does not fit the glob"):
            open_input(path, axes="czyx")
        with pytest.raises(ArgumentError, match=r"axes='xyx' repeats 'x'"):
            open_input(path, axes="xyx")

    def test_missing_file_in_the_contract_sense(self, tmp_path: Path) -> None:
        with pytest.raises(InputNotFoundError, match=r"nothing/\*\.tif: the pattern matches no file"):
            open_input(tmp_path / "nothing" / "*.tif")


def test_sorted_order_is_by_name(tmp_path: Path) -> None:
    for name, value in [("b.npy", 2), ("a.npy", 1), ("c.npy", 3)]:
        np.save(tmp_path / name, np.full((2, 2), value, np.uint8))
    image = open_input(str(tmp_path / "*.npy"))
    assert image.array[:, 0, 0].compute(**SYNC).tolist() == [1, 2, 3]


def test_volumes_stack_with_a_batch_letter(tmp_path: Path) -> None:
    for index in range(2):
        np.save(tmp_path / f"v{index}.npy", np.zeros((3, 4, 5), np.float32))
    image = open_input(str(tmp_path / "v*.npy"))
    assert (image.axes, image.shape) == ("bzyx", (2, 3, 4, 5))
    assert open_input(str(tmp_path / "v*.npy"), axes="tzyx").axes == "tzyx"


def test_glob_chunks_argument(tmp_path: Path) -> None:
    for index in range(4):
        np.save(tmp_path / f"s{index}.npy", np.full((6, 6), index, np.int16))
    image = open_input(str(tmp_path / "s*.npy"), chunks=(2, 3, 6))
    assert image.chunks == ((2, 2), (3, 3), (6,))
    assert image.array[:, 0, 0].compute(**SYNC).tolist() == [0, 1, 2, 3]


def test_shape_mismatch_names_the_first_odd_file(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((8, 9), np.uint8))
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((7, 7), np.uint8))
    with pytest.raises(
        InputFormatError, match=r"b\.tif holds \(8, 9\) uint8, but .*a\.tif holds \(8, 8\) uint8"
    ):
        open_input(str(tmp_path / "*.tif"))


def test_dtype_mismatch_names_the_odd_file(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((8, 8), np.uint16))
    with pytest.raises(
        InputFormatError, match=r"b\.tif holds \(8, 8\) uint16, but .*a\.tif holds \(8, 8\) uint8"
    ):
        open_input(str(tmp_path / "*.tif"))


def test_glob_in_a_missing_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match=r"folder '.*absent' does not exist"):
        open_input(str(tmp_path / "absent" / "*.tif"))


def test_an_incomplete_output_among_the_files_is_refused(tmp_path: Path) -> None:
    write_output(np.zeros((4, 4), np.float32), str(tmp_path / "a.tif"))
    write_output(np.zeros((4, 4), np.float32), str(tmp_path / "b.tif"))
    tifffile.tiffcomment(tmp_path / "b.tif", '{"shape": [4, 4], "convflow": {"incomplete": true}}')
    with pytest.raises(InputFormatError, match=r"b\.tif: is an incomplete convflow output"):
        open_input(str(tmp_path / "*.tif"))


# Issue #13 item 6: input axes may name the axes of each file of a glob.
def write_scans(folder: Path, count: int, shape: tuple[int, ...]) -> str:
    """`count` TIFF files of `shape` in folder/scans; returns their glob."""
    (folder / "scans").mkdir()
    for index in range(count):
        tifffile.imwrite(
            folder / "scans" / f"s{index}.tif",
            np.full(shape, index, np.uint8),
            metadata=None,
            photometric="minisblack",
        )
    return str(folder / "scans" / "*.tif")


def test_axes_of_each_file_get_a_leading_batch_axis_over_the_files(tmp_path: Path) -> None:
    image = open_input(write_scans(tmp_path, 3, (5, 6)), axes="YX")
    assert (image.axes, image.shape) == ("byx", (3, 5, 6))
    assert image.array[:, 0, 0].compute(**SYNC).tolist() == [0, 1, 2]


def test_the_full_form_still_names_the_axis_over_the_files(tmp_path: Path) -> None:
    assert open_input(write_scans(tmp_path, 3, (5, 6)), axes="tyx").axes == "tyx"


@pytest.mark.parametrize(("axes", "expected"), [("zyx", "bzyx"), ("cyx", "bcyx"), ("byx", "nbyx")])
def test_axes_of_3d_files_pick_a_batch_letter_they_do_not_use(
    tmp_path: Path, axes: str, expected: str
) -> None:
    assert open_input(write_scans(tmp_path, 2, (3, 4, 5)), axes=axes).axes == expected


@pytest.mark.parametrize(
    ("axes", "match"),
    [
        (
            "x",
            r"axes='x' does not fit the glob: it stacks 2 files of shape \(4, 5\) into \(2, 4, 5\), so name "
            r"the axes of each file with 2 letters \(e.g. axes='yx'\) or those of the stack with 3 "
            r"\(e.g. axes='byx'\)",
        ),
        ("tzyx", r"axes='tzyx' does not fit the glob"),
        ("yy", r"axes='yy' repeats 'y'"),
        ("yyx", r"axes='yyx' repeats 'y'"),
        (7, r"axes=7 must be a string of letters"),
    ],
)
def test_glob_axes_that_fit_neither_form_name_both(tmp_path: Path, axes: object, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        open_input(write_scans(tmp_path, 2, (4, 5)), axes=axes)
