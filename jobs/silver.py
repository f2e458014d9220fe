"""spark-submit entry point: the `silver` job. Arguments are those of `ttb_spark silver --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["silver", *sys.argv[1:]]))
