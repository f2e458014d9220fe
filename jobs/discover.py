"""spark-submit entry point: the `discover` job. Arguments are those of `ttb_spark discover --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["discover", *sys.argv[1:]]))
