"""The stages' lines in the flow run's log: what `blend` prints after each stage
(blend/pipeline/lines.py) and the execute stage's progress lines (blend/pipeline/progress.py),
written to Prefect's run logger, so the UI shows them on the flow run's Logs tab.

Only the logger writes them: the worker's terminal shows them once, through Prefect's own
console handler, never a second time from a print."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger

from blend.pipeline.lines import stage_lines
from blend.pipeline.progress import ProgressLines

# Least time between two progress lines in the log (s): a line every 30 s is 120 an hour,
# and the progress artifact shows the latest numbers in between.
PROGRESS_LOG_INTERVAL_S = 30.0


def log_stage(stage: str, report: object) -> None:
    """`report`'s lines (blend.pipeline.chain's stage `stage`) in the current run's log;
    warnings at level WARNING."""
    logger = get_run_logger()
    for line in stage_lines(stage, report):
        logger.log(logging.WARNING if line.warning else logging.INFO, line.text)


@contextmanager
def progress_log(
    label: str, interval_s: float = PROGRESS_LOG_INTERVAL_S
) -> Iterator[ProgressLines]:
    """A progress callback that logs `execute: 120/330 rows (36%), ...` to the current run's
    log: at the first report, at most every `interval_s`, and at the end (also of a stage that
    fails: its last report). The logger is bound to the run here, so the callback may be
    called from any thread."""
    logger = get_run_logger()
    lines = ProgressLines(label, logger.info, interval_s=interval_s)
    try:
        yield lines
    finally:
        lines.close()
