"""TIFF, BigTIFF and OME-TIFF (convflow/io/_tiff.py): lazy reads through tifffile's zarr store,
tiled writes band by band, and the provenance JSON in the image description."""

from __future__ import annotations

import importlib.util
import json
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
from io_contract import SYNC, ReaderContract, ReaderWriterContract, tile_digest

from convflow.cli import main
from convflow.errors import ArgumentError, InputFormatError
from convflow.io import describe, open_input, write_output
from convflow.io._tiff import staging_path

HAS_IMAGECODECS = importlib.util.find_spec("imagecodecs") is not None


class TestTiff(ReaderWriterContract):
    """A multi-page, stripped, uncompressed stack: the most common TIFF there is."""

    output_format = "tiff"
    suffix = ".tif"

    def write_native(self, folder: Path, data: np.ndarray) -> str:
        path = str(folder / "native.tif")
        tifffile.imwrite(path, data, photometric="minisblack", metadata=None)
        return path

    def stored_blocks(self, out: str) -> int:
        # The blocks of an unfinished TIFF are in its staging array; no TIFF exists yet.
        assert not Path(out).exists()
        return super().stored_blocks(staging_path(out))

    def comparable(self, out: str) -> dict[str, str]:
        assert not Path(staging_path(out)).exists()
        return tile_digest(out)

    def test_pages_are_read_only_when_computed(self, tmp_path: Path, data: np.ndarray) -> None:
        path = str(tmp_path / "deflate.tif")
        tifffile.imwrite(path, data, photometric="minisblack", compression="zlib", metadata=None)
        with tifffile.TiffFile(path) as tif:
            offset = tif.pages[3].dataoffsets[0]
        with open(path, "r+b") as file:  # garble page 3's compressed data
            file.seek(offset)
            file.write(b"\xff" * 16)
        image = open_input(path, chunks=(1, 20, 24))  # would fail here if opening decoded any page
        np.testing.assert_array_equal(image.array[:3].compute(**SYNC), data[:3])
        with pytest.raises(Exception, match=r"(?i)error|invalid|incorrect|bad.data"):
            image.array[3].compute(**SYNC)

    def test_graph_pickles_without_the_data_or_a_file_handle(self, tmp_path: Path, data: np.ndarray) -> None:
        image = open_input(self.write_native(tmp_path, data))
        image.array.sum().compute(**SYNC)  # opens the file in this process
        array = pickle.loads(pickle.dumps(image.array))
        np.testing.assert_array_equal(array.compute(scheduler="processes", num_workers=2), data)

    def test_threads_read_one_file_concurrently(self, tmp_path: Path) -> None:
        values = np.random.default_rng(1).integers(0, 2**16, (64, 32, 32), dtype=np.uint16)
        path = str(tmp_path / "many.tif")
        tifffile.imwrite(
            path, values, photometric="minisblack", tile=(16, 16), compression="zlib", metadata=None
        )
        image = open_input(path, chunks=(1, 16, 16))
        np.testing.assert_array_equal(image.array.compute(scheduler="threads", num_workers=8), values)

    def test_written_tiff_is_tiled_with_json_provenance(self, tmp_path: Path, data: np.ndarray) -> None:
        out = str(tmp_path / "out.tif")
        write_output(
            da.from_array(data, chunks=(3, 7, 24)), out, chunks=(1, 16, 32), provenance={"config": {"a": 1}}
        )
        with tifffile.TiffFile(out) as tif:
            page = tif.pages[0]
            assert page.tile == (16, 32)
            assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
            described = json.loads(page.description)
        assert described["shape"] == list(data.shape)
        assert described["convflow"]["config"] == {"a": 1}
        assert described["convflow"]["output"]["axes"] == "zyx"

    @pytest.mark.parametrize(
        ("shape", "chunks"),
        [((70, 45), (30, 45)), ((70, 45), (16, 20)), ((2, 3, 40, 33), (2, 2, 17, 33))],
        ids=["2d-block-rows-straddle-tiles", "2d-small-blocks", "4d"],
    )
    def test_any_chunking_streams_into_tiles(
        self, tmp_path: Path, shape: tuple[int, ...], chunks: tuple[int, ...]
    ) -> None:
        values = np.random.default_rng(2).random(shape, dtype=np.float32)
        out = str(tmp_path / "out.tif")
        tiles = (1,) * (len(shape) - 2) + (16, 16)
        write_output(da.from_array(values, chunks=chunks), out, chunks=tiles, compute_kwargs=SYNC)
        back = open_input(out)
        assert back.shape == shape
        np.testing.assert_array_equal(back.array.compute(**SYNC), values)

    def test_tiles_must_be_multiples_of_16(self, tmp_path: Path, data: np.ndarray) -> None:
        with pytest.raises(
            ArgumentError, match=r"a TIFF tile is 10 x 12, but TIFF tiles must be multiples of 16"
        ):
            write_output(data, str(tmp_path / "out.tif"), chunks=(1, 10, 12))

    def test_an_ome_tiff_output_is_written_as_ome_tiff(self, tmp_path: Path, data: np.ndarray) -> None:
        # the rest of what OME-TIFF outputs promise: tests/io/test_conventions.py
        out = str(tmp_path / "out.ome.tif")
        write_output(data, out)
        assert open_input(out).format == "ome-tiff"

    @pytest.mark.skipif(HAS_IMAGECODECS, reason="the error is about imagecodecs being absent")
    def test_zstd_without_imagecodecs_names_the_package(self, tmp_path: Path, data: np.ndarray) -> None:
        with pytest.raises(
            ArgumentError, match=r"'zstd' for TIFF needs the imagecodecs package.*pip install"
        ):
            write_output(data, str(tmp_path / "out.tif"), compression="zstd")

    @pytest.mark.skipif(not HAS_IMAGECODECS, reason="zstd in TIFF needs imagecodecs")
    def test_zstd_round_trip(self, tmp_path: Path, data: np.ndarray) -> None:
        out = str(tmp_path / "out.tif")
        write_output(data, out, compression={"codec": "zstd", "level": 5})
        assert describe(out)["codec"] == "zstd"
        np.testing.assert_array_equal(open_input(out).array.compute(**SYNC), data)


class TestTiledBigTiff(TestTiff):
    """A tiled, deflate-compressed BigTIFF, read tile by tile."""

    output_format = "bigtiff"

    def write_native(self, folder: Path, data: np.ndarray) -> str:
        path = str(folder / "native.tif")
        tifffile.imwrite(
            path, data, photometric="minisblack", tile=(16, 16), compression="zlib", bigtiff=True
        )
        return path

    def test_working_chunks_are_whole_tiles(self, tmp_path: Path, data: np.ndarray) -> None:
        path = self.write_native(tmp_path, data)
        image = open_input(path)
        assert image.storage_chunks == (1, 16, 16)
        assert image.chunks[1:] == ((16, 4), (16, 8)) or image.chunks[1:] == ((20,), (24,))
        assert image.codec == "adobe_deflate"

    def test_bigtiff_format_writes_bigtiff(self, tmp_path: Path, data: np.ndarray) -> None:
        out = self.out(tmp_path)
        write_output(data, out, format="bigtiff")
        assert Path(out).read_bytes()[:4] == b"II+\x00"  # the BigTIFF signature


class TestOmeTiff(ReaderContract):
    """OME-TIFF in: axes and physical sizes from the OME-XML (convflow writes no OME-TIFF)."""

    suffix = ".ome.tif"
    native_axes = "tyx"

    def write_native(self, folder: Path, data: np.ndarray) -> str:
        path = str(folder / "native.ome.tif")
        metadata = {"axes": "TYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5, "PhysicalSizeYUnit": "nm"}
        tifffile.imwrite(path, data, photometric="minisblack", metadata=metadata)
        return path

    def test_scale_and_units_come_from_ome_xml(self, tmp_path: Path, data: np.ndarray) -> None:
        image = open_input(self.write_native(tmp_path, data))
        assert image.format == "ome-tiff"
        assert image.scale == (1.0, 0.5, 0.25)
        assert image.units == (None, "nanometer", "micrometer")


def test_imagej_hyperstack_axes(tmp_path: Path) -> None:
    path = str(tmp_path / "hyper.tif")
    tifffile.imwrite(path, np.zeros((2, 3, 4, 16, 16), np.uint8), imagej=True, metadata={"axes": "TZCYX"})
    assert open_input(path).axes == "tzcyx"


def test_rgb_samples_are_a_batch_axis(tmp_path: Path) -> None:
    path = str(tmp_path / "rgb.tif")
    tifffile.imwrite(path, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    assert open_input(path).axes == "yxs"


def test_pyramid_level_is_a_dataset(tmp_path: Path) -> None:
    path = str(tmp_path / "pyramid.ome.tif")
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.ones((64, 64), np.uint8), subifds=1, tile=(16, 16), metadata={"axes": "YX"})
        tif.write(np.ones((32, 32), np.uint8), subfiletype=1, tile=(16, 16))
    assert open_input(path, dataset="1").shape == (32, 32)
    with pytest.raises(
        InputFormatError, match=r"dataset='5' is not a level of this TIFF; it has levels 0, 1"
    ):
        open_input(path, dataset="5")


def test_not_a_tiff_is_named(tmp_path: Path) -> None:
    (tmp_path / "fake.tif").write_bytes(b"hello, world")
    with pytest.raises(InputFormatError, match=r"fake\.tif: not a readable TIFF file"):
        open_input(tmp_path / "fake.tif")


@pytest.mark.parametrize(
    ("compression", "match"),
    [
        ({"codec": "zlib", "level": 10}, "zlib levels run from 0 to 9"),
        ({"codec": "deflate", "level": -2}, "deflate levels run from 0 to 9"),
        ({"codec": "lzw", "level": 3}, "codec 'lzw' takes no level"),
    ],
)
def test_a_tiff_compression_level_outside_the_codecs_range_is_refused(
    tmp_path: Path, compression: dict[str, object], match: str
) -> None:
    # zlib level 10 was accepted on main and failed once the TIFF was assembled (#15, item 6).
    with pytest.raises(ArgumentError, match=match):
        write_output(np.zeros((16, 16), np.uint8), str(tmp_path / "out.tif"), compression=compression)
    assert list(tmp_path.iterdir()) == []


# --- Damaged files (#15, defect 2): on main each was read as its first page, exit 0 -------------

STACK = np.random.default_rng(15).integers(0, 255, (16, 32, 32), dtype=np.uint8)
WRITERS = {
    "shaped": {},
    "imagej": {"imagej": True, "metadata": {"axes": "ZYX"}},
    "ome": {"ome": True, "metadata": {"axes": "ZYX"}},
    "plain": {"shaped": False},
}


def damaged(tmp_path: Path, kind: str, damage: Callable[[bytearray, tifffile.TiffFile], None]) -> Path:
    """A (16, 32, 32) stack written as `kind`, then damaged in place by `damage(bytes, tif)`."""
    path = tmp_path / f"{kind}.tif"
    tifffile.imwrite(path, STACK, photometric="minisblack", **WRITERS[kind])
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        damage(data, tif)
    path.write_bytes(bytes(data))
    return path


def cut_in_half(data: bytearray, tif: tifffile.TiffFile) -> None:
    del data[len(data) // 2 :]


def scramble_tags(data: bytearray, tif: tifffile.TiffFile) -> None:
    page = tif.pages[3]
    data[page.offset + 2 : page.offset + 2 + 12 * len(page.tags)] = b"\xab" * (12 * len(page.tags))


def move_the_last_strip_past_the_end(data: bytearray, tif: tifffile.TiffFile) -> None:
    tag = tif.pages[-1].tags["StripOffsets"]
    data[tag.valueoffset : tag.valueoffset + 4] = struct.pack("<I", len(data) - 100)


REFUSED = r"(is a damaged or truncated TIFF|not a readable TIFF file) \(.+\)"


@pytest.mark.parametrize("kind", WRITERS)
@pytest.mark.parametrize("damage", [cut_in_half, move_the_last_strip_past_the_end])
def test_a_damaged_stack_is_refused_not_read_as_one_page(
    tmp_path: Path, kind: str, damage: Callable[[bytearray, tifffile.TiffFile], None]
) -> None:
    path = damaged(tmp_path, kind, damage)
    with pytest.raises(InputFormatError, match=rf"{kind}\.tif: {REFUSED}"):
        open_input(path)
    with pytest.raises(InputFormatError, match=rf"{kind}\.tif: {REFUSED}"):
        describe(path)


@pytest.mark.parametrize("kind", WRITERS)
def test_a_stack_with_a_damaged_tag_list_is_refused_or_read_whole(tmp_path: Path, kind: str) -> None:
    # A shaped or ImageJ stack is one block of pixels that tifffile reads without the later pages'
    # tags, so it may still be read, but only as all of it; the others are refused.
    path = damaged(tmp_path, kind, scramble_tags)
    if kind in ("shaped", "imagej"):
        np.testing.assert_array_equal(open_input(path).array.compute(**SYNC), STACK)
    else:
        with pytest.raises(InputFormatError, match=rf"{kind}\.tif: {REFUSED}"):
            open_input(path)


def test_an_intact_stack_still_opens(tmp_path: Path) -> None:
    for kind in WRITERS:
        path = damaged(tmp_path, kind, lambda data, tif: None)
        np.testing.assert_array_equal(open_input(path).array.compute(**SYNC), STACK)


def test_a_file_too_short_for_a_tiff_header_is_named(tmp_path: Path) -> None:
    # struct.error on main (#15, defect 5).
    (tmp_path / "six.tif").write_bytes(b"II*\x00\x08\x00")
    with pytest.raises(InputFormatError, match=r"six\.tif: not a readable TIFF file \(unpack requires"):
        open_input(tmp_path / "six.tif")


def test_every_command_refuses_a_truncated_stack_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    damaged(tmp_path, "shaped", cut_in_half)
    (tmp_path / "p.yaml").write_text(
        "input: {path: shaped.tif}\nkernels: {k: {type: box}}\nstages: [{name: s, steps: [{kernel: k}]}]\n"
        "outputs: [{stage: s, path: out/s.zarr}]\n"
    )
    monkeypatch.chdir(tmp_path)
    for command in (["inspect", "shaped.tif"], ["validate", "p.yaml"], ["run", "p.yaml"]):
        assert main(command) == 2, command
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1, captured.err
        assert "shaped.tif: is a damaged or truncated TIFF (invalid page offset" in captured.err
    assert not (tmp_path / "out").exists()


def test_an_image_whose_data_is_cut_short_is_refused(tmp_path: Path) -> None:
    # One page, its tags intact, its pixels cut short: tifffile logs nothing.
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, STACK[0], photometric="minisblack")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        InputFormatError, match=r"cut\.tif: is a damaged or truncated TIFF \(its \(32, 32\) image ends"
    ):
        open_input(path)
