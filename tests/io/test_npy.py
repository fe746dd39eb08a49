""".npy inputs (convflow/io/_npy.py): memory-mapped, read block by block, never whole."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from io_contract import SYNC, ReaderContract

from convflow.errors import InputFormatError
from convflow.io import open_input


class TestNpy(ReaderContract):
    suffix = ".npy"

    def write_native(self, folder: Path, data: np.ndarray) -> str:
        path = str(folder / "native.npy")
        np.save(path, data)
        return path

    def test_default_chunks_are_whole_rows(self, tmp_path: Path, data: np.ndarray) -> None:
        image = open_input(self.write_native(tmp_path, data))
        assert image.chunks == ((4,), (20,), (24,))  # small: one block
        assert image.codec == "none"

    def test_fortran_order_reads_the_same_values(self, tmp_path: Path, data: np.ndarray) -> None:
        path = str(tmp_path / "fortran.npy")
        np.save(path, np.asfortranarray(data))
        np.testing.assert_array_equal(open_input(path, chunks=(1, 7, 5)).array.compute(**SYNC), data)

    def test_large_file_is_mapped_not_loaded(self, tmp_path: Path) -> None:
        # 2 GiB on disk but sparse: opening and reading a corner must not touch the rest.
        path = str(tmp_path / "big.npy")
        mapped = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(512, 1024, 1024))
        mapped[0, 0, :3] = [1, 2, 3]
        mapped.flush()
        del mapped
        image = open_input(path)
        assert image.array.chunksize == (8, 1024, 1024)  # 32 MiB blocks of whole planes
        assert image.array[0, 0, :4].compute(**SYNC).tolist() == [1, 2, 3, 0]
        assert len(pickle.dumps(image.array)) < 100_000  # the graph holds the recipe, not the data

    def test_object_arrays_are_refused(self, tmp_path: Path) -> None:
        path = str(tmp_path / "objects.npy")
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        with pytest.raises(InputFormatError, match=r"objects\.npy: not a readable \.npy file"):
            open_input(path)

    def test_complex_arrays_are_refused(self, tmp_path: Path) -> None:
        path = str(tmp_path / "complex.npy")
        np.save(path, np.zeros((2, 2), np.complex64))
        with pytest.raises(InputFormatError, match=r"holds 2-d complex64 data; convflow reads numeric"):
            open_input(path)

    def test_dataset_is_refused(self, tmp_path: Path, data: np.ndarray) -> None:
        with pytest.raises(InputFormatError, match=r"holds a single array, so dataset='raw'"):
            open_input(self.write_native(tmp_path, data), dataset="raw")
