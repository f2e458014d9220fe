#!/usr/bin/env bash
# Run a ttb_spark job with spark-submit:  ./spark-submit.sh [spark options] JOB [job arguments]
#
#   ./spark-submit.sh pipeline --date 2024-01-02
#   ./spark-submit.sh --master yarn --deploy-mode cluster --verbose pipeline --env production --date 2024-01-02
#
# JOB is one of jobs/*.py; everything after it goes to the job (`python -m ttb_spark JOB --help`).
# Options before JOB go to spark-submit; --master defaults to local[*]. The Delta jar (and, for a
# lakehouse on s3:// or s3a://, hadoop-aws with s3:// served by S3A) comes from Maven Central; the
# package, with its profiles, is shipped zipped as --py-files. A master other than local[...] runs
# the Python of build/ttb_spark_env.tar.gz (`make package`), shipped with --archives.
# Environment: SPARK_SUBMIT (default: spark-submit on PATH, else the venv's), PYTHON (the submitting
# side's interpreter), TTB_PYTHON_ENV (the packed environment), TTB_* / AWS_REGION (settings; passed
# on to a cluster-mode driver), TTB_CONF_DIR (profiles folder, shipped as --files), TTB_CLUSTER_DELTA_DIR
# (the cluster's Delta jars, used by its own spark-submit; default /usr/share/aws/delta/lib, EMR's).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
SPARK_SUBMIT="${SPARK_SUBMIT:-$(command -v spark-submit || echo "$here/.venv/bin/spark-submit")}"
TTB_PYTHON_ENV="${TTB_PYTHON_ENV:-$here/build/ttb_spark_env.tar.gz}"
# pip's spark-submit (the one beside $PYTHON) finds its Spark with whatever `python3` is on PATH: point
# it at $PYTHON's. Any other spark-submit (a cluster node's) keeps its own Spark: SPARK_HOME untouched.
python_bin="$(dirname "$(command -v "$PYTHON")")"
pips_spark=no
[ "$(cd "$(dirname "$SPARK_SUBMIT")" 2>/dev/null && pwd -P)" = "$(cd "$python_bin" && pwd -P)" ] && pips_spark=yes
if [ -z "${SPARK_HOME:-}" ] && [ "$pips_spark" = yes ]; then
  SPARK_HOME="$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null)" || true
  [ -z "${SPARK_HOME:-}" ] || export SPARK_HOME
fi
# A cluster node's own spark-submit with the cluster's Delta beside it (EMR: the jars Amazon documents under
# /usr/share/aws/delta/lib) runs the job on that Delta, s3:// served by the cluster (EMRFS): the jars resolved
# here match this venv's Spark, not the cluster's.
TTB_CLUSTER_DELTA_DIR="${TTB_CLUSTER_DELTA_DIR:-/usr/share/aws/delta/lib}"
cluster_delta=()
if [ "$pips_spark" = no ] && [ -f "$TTB_CLUSTER_DELTA_DIR/delta-spark.jar" ]; then
  cluster_delta=(--cluster-delta "$TTB_CLUSTER_DELTA_DIR")
fi

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  echo
  echo "jobs:"
  for f in "$here"/jobs/*.py; do
    name="$(basename "$f" .py)"
    printf '  %-10s %s\n' "$name" "$("$PYTHON" -c "from ttb_spark.cli import STAGES; print(STAGES['$name'])" 2>/dev/null || true)"
  done
}
die() { echo "spark-submit.sh: error: $*" >&2; exit 2; }

spark_args=()
master="local[*]"
deploy_mode="client"
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    # spark-submit's options that take no value.
    -v|--verbose|--supervise) spark_args+=("$1"); shift ;;
    --master) [ $# -ge 2 ] || die "--master needs a value"; master="$2"; shift 2 ;;
    --master=*) master="${1#--master=}"; shift ;;
    --deploy-mode) [ $# -ge 2 ] || die "--deploy-mode needs a value"; deploy_mode="$2"; shift 2 ;;
    --deploy-mode=*) deploy_mode="${1#--deploy-mode=}"; shift ;;
    --*=*) spark_args+=("$1"); shift ;;
    --*) [ $# -ge 2 ] || die "$1 needs a value"; spark_args+=("$1" "$2"); shift 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { usage >&2; exit 2; }
job="$1"; shift
[ -f "$here/jobs/$job.py" ] || die "unknown job '$job' (see --help)"

# Jars and S3 settings from the settings the job will load (a driver running here: its console's logging
# too, the packaged log4j2 configuration at TTB_LOG_LEVEL); bad arguments stop here (exit 2).
local_driver=()
[ "$deploy_mode" = cluster ] || local_driver=(--local-driver)
options="$("$PYTHON" -m ttb_spark.submit ${local_driver[@]+"${local_driver[@]}"} ${cluster_delta[@]+"${cluster_delta[@]}"} "$job" "$@")" || exit $?
mapfile -t submit_options <<<"$options"

case "$master" in
  local|local\[*)
    # In-process executors: the local profile's small shuffle width (Spark's default of 200 tasks a
    # shuffle costs minutes on a laptop) and this interpreter for the Python workers.
    spark_args=(--conf spark.sql.shuffle.partitions=4 --conf spark.default.parallelism=4 ${spark_args[@]+"${spark_args[@]}"})
    python_conf=(--conf "spark.pyspark.python=$PYTHON")
    ;;
  *)
    # Separate executor machines (or JVMs): the Python environment travels as an archive.
    [ -f "$TTB_PYTHON_ENV" ] || die "no Python environment archive at $TTB_PYTHON_ENV: run 'make package' (for master $master)"
    python_conf=(--archives "$TTB_PYTHON_ENV#environment" --conf spark.pyspark.python=./environment/bin/python)
    [ "$deploy_mode" = cluster ] || python_conf+=(--conf "spark.pyspark.driver.python=$PYTHON")
    ;;
esac

driver_conf=()
if [ "$deploy_mode" = cluster ]; then
  # The driver runs on the cluster: settings variables and profiles go with it (YARN's names).
  while IFS='=' read -r name value; do
    driver_conf+=(--conf "spark.yarn.appMasterEnv.$name=$value")
  done < <(env | grep -E '^(TTB_[A-Z0-9_]+|AWS_REGION)=' | grep -v '^TTB_CONF_DIR=' || true)
  if [ -n "${TTB_CONF_DIR:-}" ]; then
    profiles="$(ls "$TTB_CONF_DIR"/*.toml | paste -sd, -)"
    driver_conf+=(--files "$profiles" --conf spark.yarn.appMasterEnv.TTB_CONF_DIR=.)
  fi
fi

mkdir -p "$here/build"
(cd "$here" && rm -f build/ttb_spark.zip && "$PYTHON" -m zipfile -c build/ttb_spark.zip ttb_spark >/dev/null)

exec "$SPARK_SUBMIT" \
  --master "$master" \
  --deploy-mode "$deploy_mode" \
  "${submit_options[@]}" \
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
  --conf spark.sql.session.timeZone=UTC \
  "${python_conf[@]}" \
  ${driver_conf[@]+"${driver_conf[@]}"} \
  --py-files "$here/build/ttb_spark.zip" \
  ${spark_args[@]+"${spark_args[@]}"} \
  "$here/jobs/$job.py" "$@"
