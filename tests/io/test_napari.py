"""OME-Zarr outputs open in napari through its OME-Zarr reader plugin (napari-ome-zarr).

The plugin's reader is what napari calls when a user opens an ``.ome.zarr``
folder; its layer data then become a napari Image layer. Neither step needs a
window.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from convflow.io import write_output

# napari's imports and layer models raise deprecation warnings of their own
# dependencies (pydantic, ...): not convflow's to fix, so not errors here.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def napari():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        plugin = pytest.importorskip("napari_ome_zarr")
        layers = pytest.importorskip("napari.layers")
    return plugin, layers


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-zarr-v0.5"])
def test_napari_opens_an_ome_zarr_output_with_its_levels_scale_and_units(napari, fmt, tmp_path, rng):
    plugin, layers = napari
    image = rng.random((6, 40, 52)).astype(np.float32)
    path = str(tmp_path / "result.ome.zarr")
    write_output(image, path, format=fmt, scale=(2.0, 0.5, 0.25), units=("micrometer",) * 3, pyramid_levels=3)

    reader = plugin.napari_get_reader(path)
    assert reader is not None, "napari-ome-zarr does not recognise the output"
    ((data, options, kind),) = reader(path)
    assert kind == "image"
    assert [level.shape for level in data] == [
        (6, 40, 52),
        (3, 20, 26),
        (1, 10, 13),
    ]  # 2x means over z, y and x

    layer = layers.Image(data, multiscale=True, **options)
    assert layer.axis_labels == ("z", "y", "x")
    assert [str(unit) for unit in layer.units] == ["micrometer"] * 3
    np.testing.assert_allclose(layer.scale, (2.0, 0.5, 0.25))
    np.testing.assert_array_equal(np.asarray(layer.data[0]), image)
