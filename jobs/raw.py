"""spark-submit entry point: the `raw` job. Arguments are those of `ttb_spark raw --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["raw", *sys.argv[1:]]))
