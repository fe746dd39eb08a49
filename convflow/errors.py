"""Exception types that convflow raises on purpose; users may catch them."""

from __future__ import annotations


class ConvflowError(Exception):
    """Base of every error convflow raises on purpose."""


class KernelError(ConvflowError, ValueError):
    """A kernel (array, file or named kernel) or its parameters are invalid."""


class ModeError(ConvflowError, ValueError):
    """A boundary mode is unknown."""


class ArgumentError(ConvflowError, ValueError):
    """An argument of a public function (axes, origin, method, dtype) is invalid."""


class ImageError(ConvflowError, TypeError):
    """The image cannot be filtered: wrong dtype or shape."""


class MethodError(ConvflowError, ValueError):
    """The requested per-chunk method cannot compute this kernel exactly."""
