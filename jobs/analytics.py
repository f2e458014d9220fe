"""spark-submit entry point: the `analytics` job. Arguments are those of `ttb_spark analytics --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["analytics", *sys.argv[1:]]))
