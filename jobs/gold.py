"""spark-submit entry point: the `gold` job. Arguments are those of `ttb_spark gold --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["gold", *sys.argv[1:]]))
