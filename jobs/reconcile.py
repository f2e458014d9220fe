"""spark-submit entry point: the `reconcile` job. Arguments are those of `ttb_spark reconcile --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["reconcile", *sys.argv[1:]]))
