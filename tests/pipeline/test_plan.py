"""Tests for convflow.pipeline._plan: a config turned into checked, lazy stages, and what the plan reports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
import zarr

from convflow import kernels
from convflow.config import load_config
from convflow.errors import ConfigError, InputFormatError, InputNotFoundError, OutputExistsError
from convflow.pipeline._plan import BLOCKS_PER_TASK, make_plan


def write_zarr(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> Path:
    """A zarr v3 array at `path` holding `data`."""
    array = zarr.create_array(str(path), shape=data.shape, chunks=chunks, dtype=data.dtype)
    array[...] = data
    return path


def write_config(folder: Path, text: str, name: str = "p.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def plan_of(folder: Path, text: str, **options: object):
    return make_plan(load_config(write_config(folder, text)), **options)


@pytest.fixture
def image(tmp_path: Path, rng: np.random.Generator) -> np.ndarray:
    """A 2-D uint16 input at tmp_path/in.zarr, chunked 8 x 8."""
    data = (rng.random((20, 27)) * 1000).astype(np.uint16)
    write_zarr(tmp_path / "in.zarr", data, (8, 8))
    return data


EDGES = """\
input: {path: in.zarr}
kernels:
  smooth: {type: gaussian, sigma: 1.0}
  gx: {type: sobel, axis: x}
  gy: {type: sobel, axis: y}
stages:
  - name: smoothed
    steps: [{kernel: smooth}, {kernel: gx, op: correlate, mode: nearest}]
  - name: ey
    source: smoothed
    steps: [{kernel: gy, mode: constant, cval: 2.0}]
  - name: edges
    combine: {op: magnitude, sources: [smoothed, ey]}
outputs:
  - {stage: edges, path: out/edges.zarr}
  - {stage: smoothed, path: out/smoothed.zarr, dtype: int16, chunks: [4, 9]}
"""


def test_stages_match_scipy_step_by_step_and_report_halos_methods_and_chunks(tmp_path, image):
    plan = make_plan(load_config(write_config(tmp_path, EDGES)))
    x = image.astype(np.float64)
    smooth = kernels.get("gaussian", sigma=1.0).values
    gx, gy = kernels.get("sobel", axis=-1).values, kernels.get("sobel", axis=-2).values
    smoothed = ndi.correlate(ndi.convolve(x, smooth), gx, mode="nearest")
    ey = ndi.convolve(smoothed, gy, mode="constant", cval=2.0)
    with dask.config.set(scheduler="synchronous"):
        got = {name: plan.arrays[name].compute() for name in ("smoothed", "ey", "edges")}
    for name, expected in [("smoothed", smoothed), ("ey", ey), ("edges", np.hypot(smoothed, ey))]:
        np.testing.assert_allclose(got[name], expected, rtol=0, atol=1e-4 * np.abs(expected).max())
        assert got[name].dtype == np.float32

    first, _second, combined = plan.stages
    assert first.halo == ((5, 5), (5, 5))  # gaussian radius 4 (sigma 1, truncate 4) + sobel 1
    assert first.chunks == ((8, 8, 4), (8, 8, 8, 3))
    assert [s.kernel for s in first.steps] == ["smooth", "gx"]
    assert all(s.method in ("direct", "separable", "fft") for s in first.steps)
    assert first.steps[0].reason.startswith("cheapest estimate per block")
    assert first.steps[1].axes == "yx"
    assert first.passes == 1
    # The largest working chunk plus the halo, in float32: a fused stack's edge chunks must hold
    # halo + 1 values, so the engine merges y's last chunk (4) into 12 and x's (3) into 11.
    assert first.block_bytes == (12 + 10) * (11 + 10) * 4
    assert any("merges them" in note for note in first.notes)
    assert combined.kind == "magnitude"
    assert combined.sources == ("smoothed", "ey")
    assert combined.halo == ((0, 0), (0, 0))

    edges, smoothed_out = plan.outputs
    assert (edges.format, edges.dtype, edges.state) == ("zarr", "float32", "new")
    assert (smoothed_out.dtype, smoothed_out.chunks) == ("int16", (4, 9))
    assert smoothed_out.options["provenance"]["stage"] == "smoothed"
    assert "execution" not in smoothed_out.options["provenance"]["config"]
    assert set(smoothed_out.options["provenance"]["kernels"]) == {"smooth", "gx", "gy"}
    assert not (tmp_path / "out").exists()  # planning writes nothing


def test_task_counts_and_peak_memory_follow_the_stated_formula(tmp_path, image):
    plan = plan_of(tmp_path, EDGES)
    counts, total = plan.task_counts()
    assert set(counts) == {"smoothed", "ey", "edges"}
    assert all(n > 0 for n in counts.values())
    assert total >= sum(counts.values())
    peak, worst = plan.peak_memory(4)
    assert worst.name == "smoothed"
    assert peak == 4 * worst.block_bytes * BLOCKS_PER_TASK


def test_kernels_run_over_the_spatial_axes_and_batch_axes_get_no_halo(tmp_path, rng):
    data = rng.random((2, 10, 12)).astype(np.float32)
    write_zarr(tmp_path / "in.zarr", data, (1, 5, 6))
    text = """\
input: {path: in.zarr, axes: cyx}
kernels:
  gy: {type: sobel, axis: y}
  row: {values: [1, 2, 4]}
stages:
  - name: d
    steps: [{kernel: gy}, {kernel: row, op: correlate}]
outputs: [{stage: d, path: d.zarr}]
"""
    plan = plan_of(tmp_path, text)
    (stage,) = plan.stages
    assert stage.halo == ((0, 0), (1, 1), (2, 2))
    assert [s.axes for s in stage.steps] == ["yx", "x"]  # a 1-D kernel runs over the last spatial axis
    gy = kernels.get("sobel", axis=0).values
    expected = np.stack(
        [ndi.correlate1d(ndi.convolve(c.astype(np.float64), gy), [1, 2, 4], axis=-1) for c in data]
    )
    got = plan.arrays["d"].compute(scheduler="synchronous")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "wrap", "constant"])
def test_halo_larger_than_the_volume_is_exact_and_noted(tmp_path, rng, mode):
    data = rng.random((6, 7))
    write_zarr(tmp_path / "in.zarr", data, (3, 3))
    text = f"""\
input: {{path: in.zarr}}
kernels: {{big: {{type: gaussian, sigma: 3.0}}}}
stages: [{{name: s, steps: [{{kernel: big, mode: {mode}}}]}}]
outputs: [{{stage: s, path: s.zarr}}]
"""
    plan = plan_of(tmp_path, text)
    assert any("reaches past the whole axis" in note for note in plan.stages[0].notes)
    expected = ndi.convolve(data, kernels.get("gaussian", sigma=3.0).values, mode=mode)
    np.testing.assert_allclose(plan.arrays["s"].compute(scheduler="synchronous"), expected, atol=1e-12)


BAD_STEP = """\
input: {{path: in.zarr}}
kernels:
  k: {kernel}
stages:
  - name: a
    steps: [{step}]
outputs: [{{stage: a, path: {output}}}]
"""


@pytest.mark.parametrize(
    ("kernel", "step", "output", "match"),
    [
        (
            "{type: gaussian, sigma: 1, ndim: 3}",
            "{kernel: k}",
            "a.zarr",
            r"line 3, kernels\.k: kernel 'k' has 3 axes, but the input has 2 spatial axes",
        ),
        ("{type: box}", "{kernel: k, origin: 5}", "a.zarr", r"stages\[0\]\.steps\[0\]\.origin: origin=5"),
        (
            "{values: [[1, 2], [3, 5]]}",
            "{kernel: k, method: separable}",
            "a.zarr",
            r"stages\[0\]\.steps\[0\]\.method: method='separable' needs a separable kernel",
        ),
        ("{type: box}", "{kernel: k}", "'a_{stem}.zarr'", r"outputs\[0\]\.path: \{stem\} names each file"),
    ],
)
def test_step_and_output_mistakes_name_their_key(tmp_path, image, kernel, step, output, match):
    text = BAD_STEP.format(kernel=kernel, step=step, output=output)
    with pytest.raises(ConfigError, match=match):
        plan_of(tmp_path, text)


def test_output_settings_that_do_not_fit_name_their_key(tmp_path, image):
    text = EDGES.replace("chunks: [4, 9]", "chunks: [4, 9, 2]")
    with pytest.raises(
        ConfigError, match=r"outputs\[1\]\.chunks: chunks=\(4, 9, 2\) needs one entry per axis"
    ):
        plan_of(tmp_path, text)


def test_input_axes_that_do_not_fit_name_input_axes(tmp_path, image):
    text = EDGES.replace("{path: in.zarr}", "{path: in.zarr, axes: zyx}")
    with pytest.raises(ConfigError, match=r"input\.axes: axes='zyx' must have one letter per axis"):
        plan_of(tmp_path, text)


def test_missing_input_names_input_path(tmp_path):
    config = load_config(write_config(tmp_path, EDGES), check_files=False)
    with pytest.raises(InputNotFoundError, match=r"p\.yaml line 1, input\.path: .*in\.zarr"):
        make_plan(config)


def test_existing_output_is_an_error_for_a_run_and_a_note_for_a_plan(tmp_path, image):
    (tmp_path / "out" / "edges.zarr").mkdir(parents=True)
    zarr.create_array(str(tmp_path / "out" / "edges.zarr"), shape=(1,), dtype="f4", overwrite=True)
    with pytest.raises(OutputExistsError, match=r"outputs\[0\]\.path: .*already exists; pass --overwrite"):
        plan_of(tmp_path, EDGES)
    plan = plan_of(tmp_path, EDGES, strict=False)
    assert plan.outputs[0].state == "exists"
    assert "--overwrite" in plan.outputs[0].note
    assert plan_of(tmp_path, EDGES, overwrite=True).outputs[0].state == "replace"


def test_stem_outputs_write_one_file_per_input_of_a_glob(tmp_path, rng):
    (tmp_path / "scans").mkdir()
    for name in ("a", "b", "c"):
        np.save(tmp_path / "scans" / f"{name}.npy", rng.random((6, 5)).astype(np.float32))
    text = """\
input: {path: scans/*.npy}
kernels: {k: {type: box}}
stages: [{name: s, steps: [{kernel: k}]}]
outputs: [{stage: s, path: 'out/{stem}_s.zarr'}]
"""
    plan = plan_of(tmp_path, text)
    assert [Path(t.path).name for t in plan.outputs] == ["a_s.zarr", "b_s.zarr", "c_s.zarr"]
    assert all(t.options["axes"] == "yx" and t.array.shape == (6, 5) for t in plan.outputs)
    assert plan.stages[0].halo == ((0, 0), (1, 1), (1, 1))  # the stacking axis is a batch axis


# Issue #13 item 4: an output's float64 dtype makes the stage it writes, and
# every stage feeding it, compute in float64; the plan decides it once.
PRECISE = """\
input: {path: in.zarr}
kernels:
  k52: {values: [[0.3, -1.7], [2.1, 0.4], [-0.9, 1.3], [0.7, 0.2], [-1.1, 0.6]]}
  gy: {type: sobel, axis: y}
stages:
  - name: smoothed
    steps: [{kernel: k52, mode: mirror}, {kernel: gy, op: correlate, mode: constant, cval: 3.0}]
  - name: side
    source: input
    steps: [{kernel: gy}]
  - name: sharp
    source: smoothed
    steps: [{kernel: k52, mode: nearest}]
  - name: both
    combine: {op: subtract, sources: [sharp, smoothed]}
outputs:
  - {stage: both, path: out/both.zarr, dtype: float64}
  - {stage: both, path: out/both_u16.zarr, dtype: uint16}
  - {stage: smoothed, path: out/smoothed.zarr, dtype: float32}
  - {stage: side, path: out/side.zarr}
"""


def test_float64_output_makes_its_stage_and_the_stages_feeding_it_compute_in_float64(tmp_path, image):
    plan = plan_of(tmp_path, PRECISE)
    report = {stage.name: stage for stage in plan.stages}
    assert {name: r.dtype for name, r in report.items()} == {
        "smoothed": "float64",
        "side": "float32",  # feeds no float64 output: the policy for uint16
        "sharp": "float64",
        "both": "float64",
    }
    assert report["both"].dtype_reason == "outputs[0] writes it as float64"
    assert report["sharp"].dtype_reason == "stage 'both' computes in float64"
    assert report["smoothed"].dtype_reason == "stage 'both' computes in float64"
    assert report["side"].dtype_reason is None
    assert {name: str(plan.arrays[name].dtype) for name in report} == {n: r.dtype for n, r in report.items()}
    narrow = {s.name: s for s in plan_of(tmp_path, PRECISE.replace("dtype: float64", "dtype: int32")).stages}
    assert report["smoothed"].block_bytes == 2 * narrow["smoothed"].block_bytes  # float64 blocks

    x = image.astype(np.float64)
    gy = kernels.get("sobel", axis=-2).values
    k52 = np.array([[0.3, -1.7], [2.1, 0.4], [-0.9, 1.3], [0.7, 0.2], [-1.1, 0.6]])
    smoothed = ndi.correlate(ndi.convolve(x, k52, mode="mirror"), gy, mode="constant", cval=3.0)
    both = ndi.convolve(smoothed, k52, mode="nearest") - smoothed
    with dask.config.set(scheduler="synchronous"):
        got = plan.arrays["both"].compute()
    scale = np.abs(x).max() * np.abs(k52).sum() ** 2 * np.abs(gy).sum() * 2
    # float32 work would be off by about 1e-7 of the scale; float64 work by about 1e-16.
    assert np.abs(got - both).max() <= 1e-9 * scale
    dtypes = {target.path.rsplit("/", 1)[-1]: target.dtype for target in plan.outputs}
    assert dtypes == {
        "both.zarr": "float64",
        "both_u16.zarr": "uint16",
        "smoothed.zarr": "float32",
        "side.zarr": "float32",
    }


def test_without_float64_outputs_every_stage_keeps_the_policy(tmp_path, image):
    text = PRECISE.replace("dtype: float64", "dtype: int32")
    plan = plan_of(tmp_path, text)
    assert [(s.dtype, s.dtype_reason) for s in plan.stages] == [("float32", None)] * 4


def test_float64_input_needs_no_widening_and_names_no_reason(tmp_path, rng):
    write_zarr(tmp_path / "in.zarr", rng.standard_normal((12, 10)), (5, 5))
    plan = plan_of(tmp_path, PRECISE)
    assert [(s.dtype, s.dtype_reason) for s in plan.stages] == [("float64", None)] * 4


# Issue #13 item 6: input.axes may name the axes of each file of a glob.
GLOB = """\
input:
  path: scans/*.tif
  axes: yx
  {chunks}
kernels:
  k: {{values: [[0.2, -1.0, 0.5], [1.5, 0.3, -0.4]]}}
  gx: {{type: sobel, axis: x}}
stages:
  - name: s
    steps: [{{kernel: k, mode: mirror}}, {{kernel: gx, op: correlate, mode: constant, cval: 1.0}}]
outputs:
  - {{stage: s, path: 'out/{{stem}}_s.zarr'}}
  - {{stage: s, path: out/all.zarr}}
"""


@pytest.fixture
def scans(tmp_path: Path, rng: np.random.Generator) -> np.ndarray:
    """Three 2-D uint8 TIFF files, tmp_path/scans/a.tif ... c.tif; returns their stack."""
    (tmp_path / "scans").mkdir()
    stack = rng.integers(0, 256, (3, 11, 13), dtype=np.uint8)
    for name, plane in zip("abc", stack, strict=True):
        tifffile.imwrite(tmp_path / "scans" / f"{name}.tif", plane, metadata=None)
    return stack


@pytest.mark.parametrize("chunks", ["", "chunks: [1, 4, 5]", "chunks: [2, 11, 2]", "chunks: [3, 1, 1]"])
def test_glob_axes_of_each_file_filter_every_file_alone_as_scipy_does(tmp_path, scans, chunks):
    plan = plan_of(tmp_path, GLOB.format(chunks=chunks))
    assert plan.image.axes == "byx"
    k = np.array([[0.2, -1.0, 0.5], [1.5, 0.3, -0.4]])
    gx = kernels.get("sobel", axis=-1).values
    expected = np.stack(
        [ndi.correlate(ndi.convolve(p, k, mode="mirror"), gx, mode="constant", cval=1.0) for p in scans * 1.0]
    )
    with dask.config.set(scheduler="synchronous"):
        got = plan.arrays["s"].compute()
    scale = 255 * np.abs(k).sum() * np.abs(gx).sum()
    assert np.abs(got - expected).max() <= 1e-5 * scale
    assert plan.stages[0].halo[0] == (0, 0)  # the axis over the files is a batch axis
    targets = {Path(t.path).name: t for t in plan.outputs}
    assert sorted(targets) == ["a_s.zarr", "all.zarr", "b_s.zarr", "c_s.zarr"]
    assert targets["b_s.zarr"].options["axes"] == "yx"
    assert targets["all.zarr"].options["axes"] == "byx"
    assert targets["c_s.zarr"].array.shape == (11, 13)


@pytest.mark.parametrize(
    ("given", "key", "match"),
    [
        (
            "axes: tzyx",
            "line 3, input.axes",
            r"axes='tzyx' does not fit the glob: it stacks 3 files of shape \(11, 13\) into \(3, 11, 13\)",
        ),
        ("axes: bczyx", "line 3, input.axes", "axes='bczyx' does not fit the glob"),
        ("axes: yy", "line 3, input.axes", "axes='yy' repeats a letter"),
    ],
)
def test_glob_axes_mistakes_name_the_key_and_line(tmp_path, scans, given, key, match):
    with pytest.raises(ConfigError, match=f"{re.escape(key)}: {match}"):
        plan_of(tmp_path, GLOB.format(chunks="").replace("axes: yx", given))


def test_glob_chunks_count_the_axis_over_the_files(tmp_path, scans):
    text = GLOB.format(chunks="chunks: [4, 5]")
    with pytest.raises(ConfigError, match=r"line 4, input\.chunks: chunks=\(4, 5\) needs one entry per axis"):
        plan_of(tmp_path, text)
    text = GLOB.format(chunks="chunks: [1, 1, 4, 5]")
    with pytest.raises(ConfigError, match=r"line 4, input\.chunks: chunks has 4 entries but axes='yx' has 2"):
        plan_of(tmp_path, text)


SIGNAL = """\
input: {path: in.zarr}
kernels:
  k: {values: [[1, 2, 3, 4], [0, 1, 0, -1], [2, 2, 1, 1]]}
stages:
  - name: full
    steps:
      - {kernel: k, convention: signal, shape: full, mode: symm}
      - {kernel: k, convention: signal, mode: fill, cval: 2}
  - name: valid
    source: input
    steps: [{kernel: k, op: correlate, shape: valid}]
  - name: same
    source: input
    steps: [{kernel: k, convention: signal, mode: circular}]
outputs:
  - {stage: full, path: out/full.zarr}
  - {stage: valid, path: out/valid.tif}
"""
SIGNAL_KERNEL = np.array([[1, 2, 3, 4], [0, 1, 0, -1], [2, 2, 1, 1]], dtype=np.float64)


def test_signal_steps_give_scipy_signals_shapes_and_values(tmp_path, image):
    # (#13) convention: signal centres as scipy.signal does; shape: full / valid change the stage's shape.
    import scipy.signal

    plan = plan_of(tmp_path, SIGNAL)
    x = image.astype(np.float64)
    k = SIGNAL_KERNEL
    expected = {
        "full": scipy.signal.convolve2d(scipy.signal.convolve2d(x, k, "full", "symm"), k, "same", "fill", 2),
        "valid": scipy.signal.correlate2d(x, k, "valid"),
        "same": scipy.signal.convolve2d(x, k, "same", "wrap"),
    }
    with dask.config.set(scheduler="synchronous"):
        for name, want in expected.items():
            got = plan.arrays[name].compute()
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * 14 * np.abs(want).max())
    full, valid, same = plan.stages
    assert (full.shape, valid.shape, same.shape) == ((22, 30), (18, 24), (20, 27))
    # The input's chunks (8, 8, 4) x (8, 8, 8, 3), grown or trimmed at the outer edges only.
    assert full.chunks == ((9, 8, 5), (9, 8, 8, 5))
    assert valid.chunks == ((7, 8, 3), (6, 8, 8, 2))
    assert [(s.convention, s.result) for s in full.steps] == [("signal", "full"), ("signal", "same")]
    assert full.passes == 2
    assert [target.array.shape for target in plan.outputs] == [(22, 30), (18, 24)]


def test_a_valid_step_with_a_kernel_larger_than_its_source_names_the_shape_key(tmp_path, image):
    text = SIGNAL.replace("[[1, 2, 3, 4], [0, 1, 0, -1], [2, 2, 1, 1]]", str(np.ones((3, 28)).tolist()))
    with pytest.raises(ConfigError, match=r"stages\[1\]\.steps\[0\]\.shape: a 'valid' result of an image"):
        plan_of(tmp_path, text)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        (
            "empty.zarr",
            lambda p: zarr.create_array(str(p), shape=(0, 64, 64), chunks=(16, 16, 16), dtype="u1"),
        ),
        ("empty.npy", lambda p: np.save(p, np.zeros((0, 64), np.float32))),
    ],
)
def test_an_empty_input_is_refused_before_planning(tmp_path: Path, name: str, make: Any) -> None:
    # A traceback from max() of an empty sequence on main (#15, defect 5). Refused rather than
    # written empty: no use can be made of an empty result, and a TIFF cannot hold one.
    make(tmp_path / name)
    text = EDGES.replace("in.zarr", name).replace(", chunks: [4, 9]", "")
    axis = "z" if name.endswith("zarr") else "y"
    with pytest.raises(
        InputFormatError,
        match=rf"p\.yaml line 1, input\.path: .*{name} has shape .*: its axis {axis} holds no",
    ):
        plan_of(tmp_path, text)
