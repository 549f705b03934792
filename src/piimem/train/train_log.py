"""train_log.tsv: one row per optimizer step (step, epoch, loss, lr, tokens_per_s), appended, never cut.

A resumed (or restarted) call first writes a line "# resumed at step N" (or "# restarted at step 0" when no
state had been saved yet), so the rows of an interrupted attempt stay; `read_train_log` reads the file.
tokens_per_s is the rate of the window of steps the row was written with (rows are written in windows).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

LOG_HEADER = "step\tepoch\tloss\tlr\ttokens_per_s\n"
_LOG_MARKER = re.compile(r"^# (?:resumed|restarted) at step (\d+)")


def write_log_rows(path: Path, rows: list[tuple]) -> None:
    with path.open("a") as fh:
        for step, epoch, loss, lr, rate in rows:
            fh.write(f"{step}\t{epoch:.6f}\t{loss:.6f}\t{lr:.6g}\t{rate:.1f}\n")


def start_log(path: Path, start_step: int) -> None:
    """A new log gets its header; an existing one (an earlier attempt) a marker line, never a cut."""
    if not path.exists():
        path.write_text(LOG_HEADER)
        return
    with path.open("a") as fh:
        if start_step:
            fh.write(f"# resumed at step {start_step}: rows above for later steps are from the interrupted "
                     f"attempt, done again below\n")
        else:
            fh.write("# restarted at step 0: no state had been saved by the interrupted attempt above\n")


def read_train_log(path: Path, *, latest: bool = True) -> pl.DataFrame:
    """train_log.tsv as a table (step, epoch, loss, lr, tokens_per_s, attempt: 1 for the first call).

    `latest`: only the rows that made the final weights, i.e. without the rows an interrupted attempt
    wrote after the step the next attempt resumed from (every step then appears once); False: every row.
    """
    rows: list[tuple] = []
    attempt = 1
    for line in Path(path).read_text().splitlines()[1:]:
        marker = _LOG_MARKER.match(line)
        if marker:
            attempt += 1
            if latest:
                resumed_at = int(marker.group(1))
                rows = [row for row in rows if row[0] <= resumed_at]
            continue
        if not line.strip() or line.startswith("#"):
            continue
        step, epoch, loss, lr, rate = line.split("\t")
        rows.append((int(step), float(epoch), float(loss), float(lr), float(rate), attempt))
    return pl.DataFrame(rows, orient="row", schema={"step": pl.Int64, "epoch": pl.Float64, "loss": pl.Float64,
                                                    "lr": pl.Float64, "tokens_per_s": pl.Float64,
                                                    "attempt": pl.Int64})
