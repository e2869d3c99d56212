"""CSV files: per-epoch / per-generation logs, rewritten atomically after every row, and
whole tables such as an evaluation's episodes."""

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


class CsvLog:
    """Rows of a CSV file; ``keep_rows`` of an earlier run are kept when resuming."""

    def __init__(self, path: str | Path, columns: list[str], keep_rows: int = 0):
        self.path, self.columns = Path(path), columns
        self.rows: list[dict] = read_csv(self.path)[:keep_rows] if keep_rows and self.path.exists() else []

    def append(self, **row) -> None:
        self.rows.append(row)
        write_csv(self.path, self.columns, self.rows)
