"""spark-submit entry point: the `daily` job. Arguments are those of `ttb_spark daily --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["daily", *sys.argv[1:]]))
