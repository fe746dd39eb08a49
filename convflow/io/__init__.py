"""Reading inputs and writing outputs: zarr, OME-Zarr, TIFF, .npy and globs, with provenance.

`open_input` turns a path into a lazy `InputImage`; `check_output` checks an
output before anything is computed; `write_output` computes a result into a
file block by block, marked incomplete until its last block is stored, and
resumable; `write_outputs` does the same for several results in one compute,
so the stages they share run once; `tidy_outputs` removes what a run killed
after finishing its outputs left beside them; `describe` and `format_description` are
what ``convflow inspect`` shows.  Paths may be URLs (``s3://``, ``gs://``,
``http(s)://`` read-only, ``file://``) with ``storage_options``; `redact`
and `redact_text` give URLs, options and messages without their secrets;
`close_sessions` closes the object stores' HTTP sessions before a process
ends.
"""

from convflow.io._image import InputImage, parse_axis_letters
from convflow.io._open import describe, format_description, open_input
from convflow.io._stores import close_sessions, redact, redact_text
from convflow.io._target import FORMATS, OutputPlan, check_output
from convflow.io._waves import WAVE_BYTES
from convflow.io._write import WriteReport, tidy_outputs, write_output, write_outputs, written_blocks

__all__ = [
    "FORMATS",
    "WAVE_BYTES",
    "InputImage",
    "OutputPlan",
    "WriteReport",
    "check_output",
    "close_sessions",
    "describe",
    "format_description",
    "open_input",
    "parse_axis_letters",
    "redact",
    "redact_text",
    "tidy_outputs",
    "write_output",
    "write_outputs",
    "written_blocks",
]
