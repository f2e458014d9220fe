#!/usr/bin/env bash
# Run a ttb_spark job with spark-submit:  ./spark-submit.sh [spark options] JOB [job arguments]
#
#   ./spark-submit.sh pipeline --date 2024-01-02
#   ./spark-submit.sh --master spark://host:7077 --conf spark.executor.memory=4g bronze --start 2024-01-01 --end 2024-01-31
#
# JOB is one of jobs/*.py (pipeline raw analytics scrape bronze silver gold reference); everything
# after it goes to the job (see `python -m ttb_spark JOB --help`). Options before JOB go to
# spark-submit; --master defaults to local[*]. The package is shipped as --py-files and the Delta
# (and, for s3a://, hadoop-aws) jars as --packages, resolved by Ivy from Maven Central.
# Environment: SPARK_SUBMIT (default: spark-submit on PATH, else the venv's), PYTHON, EXTRA_PACKAGES,
# TTB_CONF_DIR (settings profiles; default ./conf, which the zipped package cannot find by itself).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export TTB_CONF_DIR="${TTB_CONF_DIR:-$here/conf}"
PYTHON="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
SPARK_SUBMIT="${SPARK_SUBMIT:-$(command -v spark-submit || echo "$here/.venv/bin/spark-submit")}"
# Driver and Python workers run $PYTHON (the venv, when there is one) so they see the package's dependencies.
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PYTHON}"

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  echo
  echo "jobs:"
  for f in "$here"/jobs/*.py; do
    name="$(basename "$f" .py)"
    printf '  %-10s %s\n' "$name" "$("$PYTHON" -c "from ttb_spark.cli import STAGES; print(STAGES['$name'])" 2>/dev/null || true)"
  done
}

spark_args=()
master="local[*]"
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --master) master="$2"; shift 2 ;;
    --master=*) master="${1#--master=}"; shift ;;
    --*) spark_args+=("$1" "$2"); shift 2 ;;
    *) break ;;
  esac
done
# A local master gets the local profile's small shuffle width (Spark's default 200 tasks per shuffle
# costs minutes on a laptop); later --conf options given before JOB still win.
case "$master" in local*) spark_args=(--conf spark.sql.shuffle.partitions=4 --conf spark.default.parallelism=4 ${spark_args[@]+"${spark_args[@]}"}) ;; esac
[ $# -gt 0 ] || { usage >&2; exit 2; }
job="$1"; shift
[ -f "$here/jobs/$job.py" ] || { echo "spark-submit.sh: error: unknown job '$job' (see --help)" >&2; exit 2; }

packages="$("$PYTHON" -c 'from ttb_spark.spark import delta_package; print(delta_package())' 2>/dev/null || echo 'io.delta:delta-spark_4.1_2.13:4.4.0')"
case " $* " in *s3a://*) packages="$packages,$("$PYTHON" -c 'from ttb_spark.spark import HADOOP_AWS_PACKAGE; print(HADOOP_AWS_PACKAGE)')" ;; esac
[ -z "${EXTRA_PACKAGES:-}" ] || packages="$packages,$EXTRA_PACKAGES"

mkdir -p "$here/build"
(cd "$here" && rm -f build/ttb_spark.zip && "$PYTHON" -m zipfile -c build/ttb_spark.zip ttb_spark >/dev/null)

exec "$SPARK_SUBMIT" \
  --master "$master" \
  --packages "$packages" \
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
  --conf spark.sql.session.timeZone=UTC \
  --conf spark.ui.showConsoleProgress=true \
  --conf spark.log.level=WARN \
  --py-files "$here/build/ttb_spark.zip" \
  ${spark_args[@]+"${spark_args[@]}"} \
  "$here/jobs/$job.py" "$@"
