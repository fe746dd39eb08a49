"""The names of the ops: a step convolves or correlates; a combine op joins images voxel by voxel.

Kept apart from the dask code of `_stack`, so a config checks its ops without importing dask.
"""

OPS = ("convolve", "correlate")
# The combine ops that take exactly one image; the others take several.
ONE_SOURCE_OPS = ("abs", "scale", "clip")
COMBINE_OPS = ("add", "subtract", "multiply", "magnitude", *ONE_SOURCE_OPS)
