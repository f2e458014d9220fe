"""The lakehouse on S3 through s3a (moto server on 127.0.0.1), raw store on S3 through boto3.

Opt-in (``pytest -m s3a``): the job runs in its own process because the suite's one session has
no S3A connector, and that process fetches hadoop-aws and the AWS SDK bundle (~600 MB) through Ivy.
"""

from __future__ import annotations

import os
import subprocess
import sys

import boto3
import pytest

pytestmark = pytest.mark.s3a


def _keys(endpoint: str, bucket: str, prefix: str) -> set[str]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def test_pipeline_with_lakehouse_on_s3a_and_raw_store_on_s3(tmp_path, s3_server, s3_bucket):
    env = {
        **os.environ,
        "TTB_S3_ENDPOINT_URL": s3_server,
        "TTB_SIMULATOR_SCALE": "0.02",
        "TTB_SPARK_MASTER": "local[2]",
    }
    argv = [
        sys.executable, "-m", "ttb_spark", "walk", "--env", "development", "--date", "2024-01-02",
        "--receipt-methods", "001", "--simulator",
        "--raw-root", f"s3://{s3_bucket}/raw", "--lakehouse-root", f"s3a://{s3_bucket}/lakehouse",
    ]
    out = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3000)
    assert out.returncode == 0, out.stderr[-4000:]
    raw = _keys(s3_server, s3_bucket, "raw/pages/")
    assert raw and all(k.endswith(".html") for k in raw)
    lake = _keys(s3_server, s3_bucket, "lakehouse/")
    for table in ("bronze/pages", "silver/cola_details", "silver/cola_certificates", "gold/fact_products",
                  "gold/dim_companies", "gold/quality_checks", "ops/pipeline_runs"):
        assert any(k.startswith(f"lakehouse/{table}/_delta_log/") for k in lake), table
    assert not (tmp_path / "data").exists()  # nothing fell back to a local folder
