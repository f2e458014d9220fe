"""spark-submit entry point: the `pipeline` job. Arguments are those of `ttb_spark pipeline --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
