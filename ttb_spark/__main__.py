"""``python -m ttb_spark``."""

import sys

from ttb_spark.cli import main

sys.exit(main())
