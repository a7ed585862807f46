#!/usr/bin/env bash
# What the scenario runs: the PySpark job in the example's virtualenv (made by setup.sh), on Java 17.
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ] || ! ls "$here"/jars/spark-sql-kafka-*.jar >/dev/null 2>&1; then
  echo "etl-pyspark: no virtualenv or Kafka connector jars in $here; run $here/setup.sh first" >&2
  exit 2
fi
if [ -z "${JAVA_HOME:-}" ]; then
  java="$(command -v java || true)"
  if [ -z "$java" ]; then
    echo "etl-pyspark: no java on PATH and JAVA_HOME is not set (Spark 3.5 needs Java 8, 11 or 17)" >&2
    exit 2
  fi
  JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$java")")")"
  export JAVA_HOME
fi
# Spark binds its driver to loopback: this machine's name resolves to 127.0.0.1, and without it Spark warns and
# takes another interface's address.
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
exec "$here/.venv/bin/python" "$here/job.py" "$@"
