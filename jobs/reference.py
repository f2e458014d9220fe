"""spark-submit entry point: the `reference` job. Arguments are those of `ttb_spark reference --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["reference", *sys.argv[1:]]))
