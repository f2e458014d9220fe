"""spark-submit options for one job, for ``spark-submit.sh``: ``python -m ttb_spark.submit [--local-driver] [--cluster-delta DIR] JOB [ARGS]``.

Prints one option per line — the jars (Delta; hadoop-aws for a lakehouse on S3) resolved from
Maven Central and the S3A settings (``s3://`` served by S3A, endpoint, region) — from the settings
the job itself will load: profile, environment and its flags. With ``--cluster-delta DIR`` (a cluster
node's own Delta jars, e.g. EMR's), those jars instead, and no S3 filesystem settings: the cluster
serves ``s3://``. With ``--local-driver`` (client mode), the driver console's logging configuration too.
Bad arguments or settings: one line naming the problem, exit 2, before anything is submitted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from ttb_spark import cli

from ttb_spark.ops import runner
from ttb_spark.settings import SettingsError
from ttb_spark.spark import submit_options


def main(argv: Sequence[str]) -> int:
    cluster_delta, local_driver = None, False
    if argv[:1] == ["--local-driver"]:
        local_driver, argv = True, argv[1:]
    if argv[:1] == ["--cluster-delta"]:
        cluster_delta, argv = Path(argv[1]), argv[2:]
    args = cli.build_parser().parse_args(argv)
    try:
        settings, _ = runner.settings_from_args(args)
        if settings.pipeline.lakehouse_root.startswith("s3n://"):
            raise SettingsError("invalid setting TTB_LAKEHOUSE_ROOT: s3n:// has no Hadoop filesystem here: use s3a:// (or s3://, served by S3A)")
        options = submit_options(settings, cluster_delta, local_driver)
    except SettingsError as exc:
        sys.stderr.write(f"ttb_spark {args.command}: error: {exc}\n")
        return 2
    sys.stdout.write("".join(f"{option}\n" for option in options))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
