"""spark-submit entry point: the `images` job. Arguments are those of `ttb_spark images --help`."""

import sys

from ttb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["images", *sys.argv[1:]]))
