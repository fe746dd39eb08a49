"""Config files: YAML, TOML or JSON in, frozen dataclasses out, every mistake named by file, line and key.

`load_config` reads and checks one file; `build_kernels` turns its kernel
specs into `convflow.kernels.Kernel` objects for the input's spatial axes;
`config_to_dict` gives the resolved config back as plain data (provenance).
Nothing here imports dask or touches image data.
"""

from convflow.config._kernels import build_kernels
from convflow.config._load import config_to_dict, load_config
from convflow.config._model import (
    CombineStage,
    CompressionSpec,
    Config,
    ExecutionSpec,
    FilterStage,
    InputSpec,
    KernelSpec,
    OutputSpec,
    PyramidSpec,
    Stage,
    StepSpec,
    is_url,
    path_name,
)
from convflow.config._schema import SCHEDULERS
from convflow.config._source import KeyPath

__all__ = [
    "SCHEDULERS",
    "CombineStage",
    "CompressionSpec",
    "Config",
    "ExecutionSpec",
    "FilterStage",
    "InputSpec",
    "KernelSpec",
    "KeyPath",
    "OutputSpec",
    "PyramidSpec",
    "Stage",
    "StepSpec",
    "build_kernels",
    "config_to_dict",
    "is_url",
    "load_config",
    "path_name",
]
