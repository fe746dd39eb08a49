"""convflow: exact, chunked convolution pipelines for images and volumes larger than memory."""

import importlib
from typing import Any

from convflow import kernels
from convflow.engine import Step, apply_stack, combine, convolve, correlate

__version__ = "0.1.0"

__all__ = ["Step", "__version__", "apply_stack", "combine", "convolve", "correlate", "kernels", "signal"]


def __getattr__(name: str) -> Any:
    # convflow.signal (scipy.signal's conventions) loads on first use, as the
    # engine's names do: `import convflow` stays free of dask for configs.
    if name == "signal":
        return importlib.import_module("convflow.signal")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
