"""spark-submit entry point: the `maintain` job. Arguments are those of `ttb_spark maintain --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["maintain", *sys.argv[1:]]))
