"""CSV files: per-epoch / per-generation logs and whole tables such as an evaluation's episodes.

A training log's rows live in the run's saved state (the training checkpoint, the search
state); the CSV file is rewritten from them after each save and when a run starts, so
after a kill at any moment the file and the state agree again on the next run: each epoch
or generation is logged exactly once.
"""

import csv
import io
from pathlib import Path

from worldmodels.atomic import save_text


def write_csv(path: str | Path, columns: list[str], rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="raise")
    writer.writeheader()
    writer.writerows(rows)
    save_text(path, buffer.getvalue())


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def log_fits(rows: object, columns: list[str], count: int) -> bool:
    """Whether a saved state's log is ``count`` rows of strings under exactly these columns."""
    return (isinstance(rows, list) and len(rows) == count
            and all(isinstance(row, dict) and set(row) == set(columns) and all(isinstance(v, str) for v in row.values())
                    for row in rows))
