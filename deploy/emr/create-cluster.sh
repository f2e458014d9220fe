#!/usr/bin/env bash
# Create the EMR on EC2 cluster ttb_spark's steps run on: release emr-spark-8.0.0 (Apache Spark
# 4.0.2, Delta 4.0.0, Python 3.11), Delta enabled (configurations.json). Prints the cluster id.
#   SUBNET_ID=subnet-... LOG_URI=s3://<bucket>/emr-logs/ deploy/emr/create-cluster.sh
# The subnet needs a route to the internet (the scrape stage calls the TTB registry); the EC2
# instance profile grants S3 access to the code, raw and lakehouse buckets.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
RELEASE_LABEL=emr-spark-8.0.0
aws emr create-cluster \
  --name ttb_spark \
  --release-label "$RELEASE_LABEL" \
  --applications Name=Spark \
  --configurations "file://$here/configurations.json" \
  --log-uri "${LOG_URI:?set LOG_URI=s3://<bucket>/emr-logs/}" \
  --instance-type "${INSTANCE_TYPE:-m5.xlarge}" \
  --instance-count "${INSTANCE_COUNT:-3}" \
  --service-role "${SERVICE_ROLE:-EMR_DefaultRole_V2}" \
  --ec2-attributes "InstanceProfile=${INSTANCE_PROFILE:-EMR_EC2_DefaultRole},SubnetId=${SUBNET_ID:?set SUBNET_ID=subnet-...}" \
  --query ClusterId --output text
