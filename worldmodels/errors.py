"""The errors every stage turns into a single line (worldmodels/cli.py run_stage)."""


class DataError(Exception):
    """Bad or missing input, or an output that cannot be written; the message is one line
    naming the file or folder and the fix."""


class OutputError(DataError):
    """An output that cannot be written (a full disk, a folder that takes no files): never
    a reason to skip an input file."""
