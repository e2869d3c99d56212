"""Per-epoch / per-generation CSV logs, rewritten atomically after every row."""

import csv
import io
from pathlib import Path

from worldmodels.atomic import save_text


class CsvLog:
    """Rows of a CSV file; ``keep_rows`` of an earlier run are kept when resuming."""

    def __init__(self, path: str | Path, columns: list[str], keep_rows: int = 0):
        self.path, self.columns = Path(path), columns
        self.rows: list[dict] = []
        if keep_rows and self.path.exists():
            with open(self.path, newline="") as f:
                self.rows = list(csv.DictReader(f))[:keep_rows]

    def append(self, **row) -> None:
        self.rows.append(row)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, extrasaction="raise")
        writer.writeheader()
        writer.writerows(self.rows)
        save_text(self.path, buffer.getvalue())
