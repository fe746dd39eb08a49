"""Exception types that convflow raises on purpose; users may catch them."""

from __future__ import annotations


class ConvflowError(Exception):
    """Base of every error convflow raises on purpose."""


class KernelError(ConvflowError, ValueError):
    """A kernel (array, file or named kernel) or its parameters are invalid."""


class ConfigError(ConvflowError, ValueError):
    """A config file is invalid; the message names the file, line, key path and the fix."""


class ModeError(ConvflowError, ValueError):
    """A boundary mode is unknown."""


class ArgumentError(ConvflowError, ValueError):
    """An argument of a public function (axes, origin, method, dtype) is invalid."""


class ImageError(ConvflowError, TypeError):
    """The image cannot be filtered: wrong dtype or shape."""


class MethodError(ConvflowError, ValueError):
    """The requested per-chunk method cannot compute this kernel exactly."""


class InputNotFoundError(ConvflowError, FileNotFoundError):
    """An input path does not exist, or a glob matches no file."""


class InputFormatError(ConvflowError, ValueError):
    """An input exists but cannot be read: unknown format, missing dataset, incomplete output."""


class OutputExistsError(ConvflowError, FileExistsError):
    """An output exists and the run was not told to overwrite or resume it."""


class OutputLockedError(OutputExistsError):
    """Another live run is writing the output (it holds the output's lease); the message names it."""


class OutputPathError(ConvflowError, ValueError):
    """An output path is unusable: the input itself, inside the input, or of an unknown format."""


class ResumeError(ConvflowError, ValueError):
    """An incomplete output cannot be resumed: it was written with a different config or layout."""


class OutputError(ConvflowError, OSError):
    """An output could not be written: unwritable path, full disk, or another OS error."""
