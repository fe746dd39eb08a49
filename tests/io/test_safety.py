"""The safety promises of SPEC section 5 (convflow/io/_target.py and _write.py): outputs are never
touched without --overwrite, never the input, marked incomplete until done, and resumable."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr
from io_contract import SYNC, Boom, chunk_digest, counting, failing_at, tree_digest

from convflow.errors import (
    ArgumentError,
    OutputError,
    OutputExistsError,
    OutputPathError,
    ResumeError,
)
from convflow.io import check_output, describe, open_input, write_output

CONFIG = {"config": {"sigma": 1}}


@pytest.fixture
def volume(tmp_path: Path) -> str:
    """An input zarr array inside a group: vol.zarr/raw."""
    root = zarr.open_group(str(tmp_path / "vol.zarr"), mode="w")
    root.create_array("raw", data=np.arange(6 * 8 * 8, dtype=np.uint16).reshape(6, 8, 8), chunks=(2, 8, 8))
    return str(tmp_path / "vol.zarr" / "raw")


@pytest.fixture
def written(tmp_path: Path) -> str:
    """A complete convflow output."""
    out = str(tmp_path / "done.zarr")
    write_output(np.ones((4, 4), np.float32), out, provenance=CONFIG)
    return out


@pytest.fixture
def interrupted(tmp_path: Path) -> str:
    """An output whose write stopped after some of its blocks (at block (2,))."""
    out = str(tmp_path / "half.zarr")

    def stop_at_2(block: np.ndarray, block_info: Any = None) -> np.ndarray:
        if block_info[0]["chunk-location"] == (2,):
            raise KeyboardInterrupt
        return block

    stopping = da.arange(12, chunks=3, dtype=np.float32).map_blocks(stop_at_2, dtype=np.float32)
    with pytest.raises(KeyboardInterrupt):
        write_output(stopping, out, provenance=CONFIG, compute_kwargs=SYNC)
    return out


# ---- never touched without --overwrite; checked before any compute -----------------------------


def test_existing_output_is_refused_naming_overwrite(written: str, exploding: Any) -> None:
    before = tree_digest(written)
    with pytest.raises(OutputExistsError, match=rf"{written}: already exists; pass --overwrite"):
        write_output(exploding((4, 4)), written)
    assert tree_digest(written) == before


def test_a_folder_that_is_not_an_output_is_never_removed(tmp_path: Path) -> None:
    precious = tmp_path / "notes.zarr"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    with pytest.raises(OutputExistsError, match=r"exists and is not a zarr store.*even with --overwrite"):
        write_output(np.zeros(3), str(precious), overwrite=True)
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_check_output_validates_without_an_array(written: str, tmp_path: Path) -> None:
    with pytest.raises(OutputExistsError, match=r"--overwrite"):
        check_output(written)
    assert check_output(str(tmp_path / "new.tif")).state == "new"


def test_overwrite_and_resume_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match=r"overwrite=True and resume=True exclude each other"):
        write_output(np.zeros(3), str(tmp_path / "o.zarr"), overwrite=True, resume=True)


# ---- never the input ---------------------------------------------------------------------------


def test_output_that_is_the_input_is_refused(volume: str, exploding: Any) -> None:
    image = open_input(volume)
    with pytest.raises(OutputPathError, match=r"raw: is the input; convflow never writes over its input"):
        write_output(exploding((6, 8, 8)), volume, format="zarr", inputs=[image], overwrite=True)


def test_output_inside_the_input_is_refused(volume: str, tmp_path: Path) -> None:
    inside = str(tmp_path / "vol.zarr" / "raw" / "smooth.zarr")
    with pytest.raises(OutputPathError, match=r"lies inside the input"):
        check_output(inside, inputs=[volume])


def test_output_holding_the_input_is_refused(volume: str, tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match=r"contains the input .*raw, which writing it would destroy"):
        check_output(str(tmp_path / "vol.zarr"), inputs=[open_input(volume)], overwrite=True)
    assert open_input(volume).shape == (6, 8, 8)


def test_an_input_at_a_url_beside_a_local_one_leaves_the_local_one_checked(
    volume: str, tmp_path: Path
) -> None:
    # A URL among the inputs used to send every input to the URL comparison, where a local one is skipped.
    inside = str(tmp_path / "vol.zarr" / "raw" / "smooth.zarr")
    with pytest.raises(OutputPathError, match=r"lies inside the input"):
        check_output(inside, inputs=["s3://bucket/other.zarr", volume])


def test_a_link_to_the_input_is_the_input(volume: str, tmp_path: Path) -> None:
    link = tmp_path / "alias.zarr"
    link.symlink_to(volume)
    with pytest.raises(OutputPathError, match=r"is the input"):
        check_output(str(link), inputs=[volume], overwrite=True)


def test_output_matching_the_input_glob_is_refused(tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    tifffile.imwrite(tmp_path / "scans" / "a.tif", np.zeros((4, 4), np.uint8))
    scans = open_input(str(tmp_path / "scans" / "*.tif"))
    with pytest.raises(OutputPathError, match=r"matches the input pattern .*a later run would read it"):
        check_output(str(tmp_path / "scans" / "smooth.tif"), inputs=[scans])


def test_writing_leaves_the_input_untouched(volume: str, tmp_path: Path) -> None:
    before = tree_digest(Path(volume).parent)
    image = open_input(volume)
    write_output(image.array * 2, str(tmp_path / "out.zarr"), inputs=[image])
    assert tree_digest(Path(volume).parent) == before


# ---- incomplete until the last chunk; resume ---------------------------------------------------


def test_incomplete_output_refuses_a_plain_rerun(interrupted: str) -> None:
    with pytest.raises(
        OutputExistsError, match=r"incomplete output of an interrupted run; pass --resume.*--overwrite"
    ):
        write_output(da.arange(12, chunks=3, dtype=np.float32), interrupted, provenance=CONFIG)


def test_resume_refuses_another_config(interrupted: str) -> None:
    with pytest.raises(
        ResumeError, match=r"cannot resume: config\.sigma: stored 1, this run 2\. .*--overwrite"
    ):
        write_output(
            da.arange(12, chunks=3, dtype=np.float32),
            interrupted,
            provenance={"config": {"sigma": 2}},
            resume=True,
        )


def test_resume_refuses_another_layout(interrupted: str) -> None:
    with pytest.raises(ResumeError, match=r'output\.dtype: stored "float32", this run "uint8"'):
        write_output(da.arange(12, chunks=3), interrupted, dtype="uint8", provenance=CONFIG, resume=True)


def test_resume_on_a_complete_output_does_nothing(written: str, exploding: Any) -> None:
    before = tree_digest(written)
    report = write_output(exploding((4, 4), dtype=np.float32), written, provenance=CONFIG, resume=True)
    assert (report.status, report.blocks_written) == ("complete", 0)
    assert tree_digest(written) == before


def test_resume_on_an_output_convflow_did_not_write_is_refused(tmp_path: Path) -> None:
    foreign = str(tmp_path / "foreign.zarr")
    zarr.create_array(foreign, data=np.zeros(3))
    with pytest.raises(
        OutputExistsError, match=r"was not written by convflow, so there is nothing to resume"
    ):
        check_output(foreign, resume=True)


def test_resume_with_nothing_there_writes_it_all(tmp_path: Path) -> None:
    report = write_output(np.zeros((4, 4)), str(tmp_path / "new.zarr"), resume=True)
    assert (report.status, report.blocks_written) == ("written", 1)


def test_resume_after_sigkill_recomputes_only_missing_chunks(tmp_path: Path) -> None:
    out, clean = tmp_path / "killed.zarr", tmp_path / "clean.zarr"
    script = textwrap.dedent(
        """
        import sys, time
        import dask.array as da, numpy as np
        from convflow.io import write_output

        def slow(block):
            time.sleep(0.1)
            return block * 2

        data = np.arange(16 * 32 * 32, dtype=np.float32).reshape(16, 32, 32)
        meta = np.empty((0, 0, 0), np.float32)
        result = da.from_array(data, chunks=(1, 32, 32)).map_blocks(slow, dtype=np.float32, meta=meta)
        sync = {"scheduler": "synchronous"}
        write_output(result, sys.argv[1], provenance={"config": {"factor": 2}}, compute_kwargs=sync)
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(out)])
    deadline = time.monotonic() + 60
    while len(chunk_digest(out) if out.exists() else {}) < 4 and writer.poll() is None:
        assert time.monotonic() < deadline, "the writer stored no chunks in time"
        time.sleep(0.02)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert describe(out)["incomplete"] is True
    stored = len(chunk_digest(out))
    assert 4 <= stored < 16

    data = np.arange(16 * 32 * 32, dtype=np.float32).reshape(16, 32, 32)
    seen: list[tuple[int, ...]] = []
    report = write_output(
        counting(data, (1, 32, 32), seen) * 2, str(out), provenance={"config": {"factor": 2}}, resume=True
    )
    assert report.blocks_written == len(seen) == 16 - stored
    write_output(
        da.from_array(data, chunks=(1, 32, 32)) * 2, str(clean), provenance={"config": {"factor": 2}}
    )
    assert chunk_digest(out) == chunk_digest(clean)
    assert "resumed" in describe(out)["convflow"]


# ---- unwritable paths and full disks -----------------------------------------------------------


def test_output_under_a_file_is_an_output_error(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(OutputError, match=r"cannot be written: .*file\.txt is not a folder"):
        check_output(str(tmp_path / "file.txt" / "out.zarr"))


def test_a_full_disk_is_an_output_error(tmp_path: Path) -> None:
    # A file size limit fails writes the way a full disk does (EFBIG instead of ENOSPC).
    script = textwrap.dedent(
        """
        import resource, signal, sys
        import numpy as np
        from convflow.errors import OutputError
        from convflow.io import write_output

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
        try:
            sync = {"scheduler": "synchronous"}
            write_output(np.ones((64, 64)), sys.argv[1], compression="none", compute_kwargs=sync)
        except OutputError as err:
            print(err)
            sys.exit(3)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "full.zarr")], capture_output=True, text=True
    )
    assert done.returncode == 3, done.stderr
    assert "full.zarr" in done.stdout
    assert "File too large" in done.stdout
    assert "--resume" in done.stdout


# ---- provenance arguments ----------------------------------------------------------------------


def test_provenance_may_not_use_convflow_keys(tmp_path: Path) -> None:
    with pytest.raises(
        ArgumentError, match=r"provenance uses the key\(s\) 'started', which convflow sets itself"
    ):
        check_output(str(tmp_path / "o.zarr"), provenance={"started": "yesterday"})


def test_provenance_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(
        ArgumentError, match=r"provenance holds a value of type object that cannot be stored as JSON"
    ):
        check_output(str(tmp_path / "o.zarr"), provenance={"kernel": object()})


@pytest.mark.parametrize(
    ("compression", "litter"),
    [
        # convflow writes a chunk file through the scratch folder beside the output (#12)
        ("zstd", "out.zarr.convflow-scratch/3bf174e1.partial"),
        # zarr writes blosc chunks itself, its temporaries beside the chunks
        ("blosc", "out.zarr/c/0/0.3bf174e1.partial"),
    ],
)
def test_a_finished_output_holds_no_partial_chunk_files(tmp_path: Path, compression, litter) -> None:
    # A worker killed mid-write leaves a temporary "*.partial" file behind; the retried task
    # writes the chunk itself. Here a block plants such a leftover, where a writer of that output
    # leaves it, while the output is written.
    output = tmp_path / "out.zarr"

    def plant(block: np.ndarray) -> np.ndarray:
        left = tmp_path / litter
        left.parent.mkdir(parents=True, exist_ok=True)
        left.write_bytes(b"cut short")
        return block

    image = da.arange(64.0, chunks=16).reshape(8, 8).rechunk(4)
    write_output(
        image.map_blocks(plant, meta=np.array((), image.dtype)),
        output,
        compression=compression,
        compute_kwargs=SYNC,
    )
    assert not list(tmp_path.rglob("*.partial"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]
    np.testing.assert_array_equal(zarr.open_array(str(output))[...], np.arange(64.0).reshape(8, 8))


def test_finishing_an_output_lists_only_its_scratch_folder_never_its_chunks(
    tmp_path: Path, monkeypatch
) -> None:
    # #12: the sweep for leftovers used to walk every chunk file of the output at the end of a run.
    walked: list[str] = []
    real = os.walk

    def walk(top, *args, **kwargs):
        walked.append(str(top))
        return real(top, *args, **kwargs)

    monkeypatch.setattr(os, "walk", walk)
    write_output(da.zeros((8, 8, 8), chunks=2), tmp_path / "out.zarr", compute_kwargs=SYNC)
    write_output(
        da.zeros((8, 8, 8), chunks=2), tmp_path / "p.ome.zarr", pyramid_levels=2, compute_kwargs=SYNC
    )
    assert not [top for top in walked if top.startswith(str(tmp_path / "out.zarr"))]
    assert not [top for top in walked if top.startswith(str(tmp_path / "p.ome.zarr"))]


def test_resuming_an_output_zarr_writes_asks_for_its_chunks_and_never_lists_them(
    tmp_path: Path, monkeypatch
) -> None:
    # A resume of an output whose chunks zarr writes itself (blosc) used to walk the whole output
    # for its chunk keys before the first block (#12); it now asks for each block's files as it comes.
    output = tmp_path / "out.zarr"
    data = np.arange(512.0).reshape(8, 8, 8)
    with pytest.raises(Boom):
        write_output(
            failing_at(da.from_array(data, chunks=2), (0, 0, 0)),
            output,
            compression="blosc",
            compute_kwargs=SYNC,
        )
    stored = sum(1 for p in (output / "c").rglob("*") if p.is_file())
    walked: list[str] = []
    real = os.walk

    def walk(top, *args, **kwargs):
        walked.append(str(top))
        return real(top, *args, **kwargs)

    seen: list[tuple[int, ...]] = []
    monkeypatch.setattr(os, "walk", walk)
    report = write_output(
        counting(data, (2, 2, 2), seen), output, compression="blosc", resume=True, compute_kwargs=SYNC
    )
    assert report.status == "resumed"
    assert stored > 0
    assert (0, 0, 0) in seen
    assert len(seen) < 64  # only what was missing
    assert walked == [str(output)]  # the final sweep for zarr's temporaries, nothing before
    np.testing.assert_array_equal(zarr.open_array(str(output))[...], data)


def test_an_output_inside_a_zarr_store_is_refused(tmp_path: Path) -> None:
    # Accepted on main: the next --overwrite of the outer store deleted this output with it (#15, defect 8).
    write_output(np.zeros((4, 4), np.float32), str(tmp_path / "a.zarr"))
    with pytest.raises(
        OutputPathError, match=r"a\.zarr/b/inner\.zarr: lies inside the zarr store .*a\.zarr,"
    ):
        check_output(str(tmp_path / "a.zarr" / "b" / "inner.zarr"), np.zeros((4, 4), np.float32))


def test_writability_is_probed_by_creating_a_file_and_leaves_nothing(tmp_path: Path) -> None:
    # As root os.access says every folder is writable, /proc included (#15, defect 9).
    with pytest.raises(
        OutputError, match=r"/proc/convflow/out\.zarr: cannot be written: creating a file in /proc"
    ):
        check_output("/proc/convflow/out.zarr", np.zeros((4, 4), np.float32))
    before = sorted(tmp_path.iterdir())
    check_output(str(tmp_path / "new" / "out.zarr"), np.zeros((4, 4), np.float32))
    assert sorted(tmp_path.iterdir()) == before


def test_an_overwrite_stopped_while_removing_the_old_output_is_run_again(tmp_path, monkeypatch):
    # A run killed while it removed the output it replaces left a folder no check recognised (#15).
    out = tmp_path / "out.zarr"
    write_output(np.ones((16, 16)), str(out), chunks=8, provenance=CONFIG)

    remove = shutil.rmtree

    def cut_short(path, *args, **kwargs):
        if "scratch" in str(path):  # the old output's scratch folder goes as ever
            return remove(path, *args, **kwargs)
        (Path(path) / "zarr.json").unlink()
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr("convflow.io._write.shutil.rmtree", cut_short)
        with pytest.raises(KeyboardInterrupt):
            write_output(np.zeros((16, 16)), str(out), chunks=8, provenance=CONFIG, overwrite=True)
    assert not out.exists()  # renamed away whole first: nothing half-removed under the output's name
    report = write_output(np.full((16, 16), 2.0), str(out), chunks=8, provenance=CONFIG)
    assert report.status == "written"
    np.testing.assert_array_equal(zarr.open_array(str(out))[...], 2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_the_writability_probe_never_names_a_file_a_kill_could_leave(tmp_path: Path, monkeypatch) -> None:
    # A SIGKILL between creating a named probe and removing it left `.convflow-probe-*` in the
    # output's folder (fault suite, seed 20261203); the probe's file now has no name while it is open.
    seen: list[list[str]] = []
    close = os.close

    def close_and_look(descriptor: int) -> None:
        seen.append(sorted(os.listdir(tmp_path)))
        close(descriptor)

    monkeypatch.setattr(os, "close", close_and_look)
    check_output(str(tmp_path / "out.zarr"), np.zeros((4, 4), np.float32))
    monkeypatch.undo()
    assert seen
    assert all(names == [] for names in seen)
    assert os.listdir(tmp_path) == []
