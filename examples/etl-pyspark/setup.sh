#!/usr/bin/env bash
# The Spark example's own setup step, idempotent (does nothing when both are there already):
#  - a virtualenv .venv next to this file with the pinned packages of requirements.txt from PyPI (pyspark 3.5.3
#    is a ~317 MB download: Spark's jars come with it);
#  - jars/: Spark's Kafka source (spark-sql-kafka-0-10_2.12 3.5.3) and what it needs beyond pyspark's own jars,
#    resolved through Maven from pom.xml (not through Ivy's spark.jars.packages at run time).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
jars="$here/jars"
if ! { "$venv/bin/python" -c 'import pyspark, pymysql, confluent_kafka' >/dev/null 2>&1 \
       && "$venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null | grep -qix 'pyspark==3.5.3'; }; then
  echo "etl-pyspark: installing $(grep -v '^#' "$here/requirements.txt" | tr '\n' ' ')into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi
if ! ls "$jars"/spark-sql-kafka-0-10_2.12-3.5.3.jar "$jars"/kafka-clients-*.jar >/dev/null 2>&1; then
  echo "etl-pyspark: resolving Spark's Kafka connector into $jars (mvn)"
  rm -rf "$jars.partial"
  if ! out="$(cd "$here" && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime \
                -DoutputDirectory="$jars.partial" 2>&1)"; then
    echo "$out" >&2
    echo "etl-pyspark: mvn could not resolve the jars of $here/pom.xml" >&2
    exit 1
  fi
  rm -rf "$jars"
  mv "$jars.partial" "$jars"
fi
