"""convflow: exact, chunked convolution pipelines for images and volumes larger than memory."""

from convflow import kernels
from convflow.engine import Step, apply_stack, combine, convolve, correlate

__version__ = "0.1.0"

__all__ = ["Step", "__version__", "apply_stack", "combine", "convolve", "correlate", "kernels"]
