"""convflow: exact, chunked convolution pipelines for images and volumes larger than memory."""

from convflow import kernels
from convflow._convolve import convolve, correlate
from convflow._stack import Step, apply_stack, combine

__version__ = "0.1.0"

__all__ = ["Step", "__version__", "apply_stack", "combine", "convolve", "correlate", "kernels"]
