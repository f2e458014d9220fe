#!/usr/bin/env bash
# EMR on EC2 bootstrap action: Python 3.11 with ttb_spark's runtime dependencies on every node
# (Spark and Delta come with the EMR release; the step ships the package itself with --py-files).
#   --bootstrap-actions Path=s3://ttb-cola-lakehouse/code/bootstrap.sh,Args=[s3://ttb-cola-lakehouse/code/ttb_spark-0.1.0-py3-none-any.whl]
set -euo pipefail
wheel="${1:?usage: bootstrap.sh s3://.../ttb_spark-<version>-py3-none-any.whl}"
sudo dnf install -y python3.11 python3.11-pip
aws s3 cp "$wheel" /tmp/
sudo python3.11 -m pip install "/tmp/$(basename "$wheel")"
