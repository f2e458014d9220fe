"""spark-submit entry point: the `walk` job. Arguments are those of `ttb_spark walk --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["walk", *sys.argv[1:]]))
