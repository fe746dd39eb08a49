"""convflow: exact, chunked convolution pipelines for images and volumes larger than memory."""

from convflow._convolve import convolve, correlate

__version__ = "0.1.0"

__all__ = ["__version__", "convolve", "correlate"]
