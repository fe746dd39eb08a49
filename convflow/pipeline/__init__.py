"""A config made runnable: the plan of every stage and output, then its run on a dask scheduler.

`make_plan` opens the input, builds each stage lazily with the engine and
checks every output, all before a block is computed; `resolve_execution`
picks the scheduler; `run_plan` writes the outputs with progress.
"""

from convflow.pipeline._execution import (
    NOT_YET,
    Execution,
    SchedulerError,
    resolve_execution,
    run_plan,
)
from convflow.pipeline._plan import OutputTarget, Plan, StageReport, StepReport, make_plan
from convflow.pipeline._progress import duration_text, progress_style

__all__ = [
    "NOT_YET",
    "Execution",
    "OutputTarget",
    "Plan",
    "SchedulerError",
    "StageReport",
    "StepReport",
    "duration_text",
    "make_plan",
    "progress_style",
    "resolve_execution",
    "run_plan",
]
