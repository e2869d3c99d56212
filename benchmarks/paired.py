"""Two saved evaluations compared track by track, without driving again: the mean of
``this - that`` ± its standard error, the tracks each won and both agents' laps (the same
line as 05 --evaluate --paired-with). Both files are evaluation.csv files of 05 --evaluate;
the tracks both hold are compared, and the line names their set.
Usage:

    python benchmarks/paired.py checkpoints/a/evaluation.csv checkpoints/b/evaluation.csv
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worldmodels.cli import run_stage  # noqa: E402
from worldmodels.env import describe_tracks  # noqa: E402
from worldmodels.errors import DataError  # noqa: E402
from worldmodels.evaluation import paired_with, read_evaluation  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("this", type=Path, help="an evaluation.csv")
    parser.add_argument("that", type=Path, help="another agent's evaluation.csv on the same tracks")
    args = parser.parse_args(argv)
    this, that = read_evaluation(args.this), read_evaluation(args.that)
    seeds = sorted(this.keys() & that.keys())
    if not seeds:
        raise DataError(f"{args.that}: no track in common with {args.this}; compare evaluations of the same --tracks")
    print(f"{args.this} on {describe_tracks(seeds)}: {paired_with(this, that, args.that, seeds)}")


if __name__ == "__main__":
    run_stage(main)
