"""spark-submit entry point: the `scrape` job. Arguments are those of `ttb_spark scrape --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["scrape", *sys.argv[1:]]))
