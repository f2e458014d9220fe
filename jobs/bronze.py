"""spark-submit entry point: the `bronze` job. Arguments are those of `ttb_spark bronze --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["bronze", *sys.argv[1:]]))
