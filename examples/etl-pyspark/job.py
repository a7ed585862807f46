"""The example ETL as a PySpark Structured Streaming job, coded against docs/your-etl.md: OpenMRS change events
(Debezium JSON) from Kafka into the flat encounter table in MariaDB — the same table as ../etl-python/etl.py,
built by the same code (its Etl class).

One process: Spark in local mode reads every topic of ETL_HARNESS_TOPICS with the Kafka source (from the
earliest offsets); each micro-batch is collected on the driver, sorted by (topic, partition, offset), and
handed to Etl.apply, which mirrors encounter/person/obs into src_* tables, rebuilds the flat rows the batch
touched, and stores each partition's next offset in `etl_progress` — in one database transaction
(progress = "sink_table": nothing is committed to Kafka).

Where Spark's offsets live: its checkpoint. Spark logs a batch's offsets there before running it and marks it
done after, so a driver killed and started again with the same environment runs the interrupted batch again
with the same offsets, then goes on. Running a batch twice leaves the same rows (REPLACE into the mirrors,
delete-and-rebuild of the flat rows, the same progress row); the log says when a batch held records applied
before.

The checkpoint is in ETL_HARNESS_STATE_DIR, which the harness makes anew for every run and gives a restarted
process again. (The group id alone does not tell runs apart: on a fresh topology it is etl-harness-dbserver1 every
time, and a checkpoint of an earlier run points past the ends of the new run's topics.) The Kafka source's
failOnDataLoss stays at its default (true): a checkpoint past a topic's end stops the query ("offset was changed
from 247 to 67, some data may have been missed") instead of skipping records.

SIGTERM stops the query and Spark and exits 0. The JVM is started with SIGTERM ignored, so the harness's SIGTERM
to the process group reaches only this driver, and Spark is not shut down under it by its own signal handler.
"""

import glob
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "etl-python"))
from etl import Etl, connect_sink  # noqa: E402  (../etl-python/etl.py: the same table, the same transaction)

from pyspark.sql import SparkSession  # noqa: E402

# The most records one micro-batch reads (all partitions together): a batch is collected on the driver.
MAX_OFFSETS_PER_TRIGGER = 20000


class Record:
    """A Kafka source row as the message interface Etl.apply reads (confluent-kafka's Message methods)."""

    __slots__ = ("_topic", "_partition", "_offset", "_value")

    def __init__(self, row):
        self._topic, self._partition, self._offset = row["topic"], row["partition"], row["offset"]
        self._value = None if row["value"] is None else bytes(row["value"])

    def topic(self):
        return self._topic

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset

    def value(self):
        return self._value


def stored_offsets(db):
    """etl_progress as {(topic, partition): next offset}, read in the batch's transaction."""
    with db.cursor() as c:
        c.execute("SELECT topic, `partition`, next_offset FROM etl_progress")
        return {(t, p): o for t, p, o in c.fetchall()}


def env(name):
    value = os.environ.get(name)
    if value is None:
        sys.exit(f"etl-pyspark: {name} is not set (the harness sets it; see docs/your-etl.md)")
    return value


def log(text):
    print(f"etl-pyspark {os.environ.get('ETL_HARNESS_INSTANCE', '?')}: {text}", flush=True)


def session():
    jars = sorted(glob.glob(os.path.join(HERE, "jars", "*.jar")))
    if not any("spark-sql-kafka" in os.path.basename(j) for j in jars):
        sys.exit(f"etl-pyspark: no Kafka connector in {HERE}/jars; run {HERE}/setup.sh first")
    log4j = os.path.join(HERE, "log4j2.properties")
    # The JVM inherits SIGTERM ignored and keeps it so (HotSpot does not install its handler for a signal
    # ignored at start): a SIGTERM to the process group stops this driver cleanly instead of Spark under it.
    # SIGKILL still ends both.
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        spark = (
            SparkSession.builder.master("local[2]")
            .appName(f"etl-pyspark-{env('ETL_HARNESS_GROUP_ID')}")
            .config("spark.jars", ",".join(jars))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.adaptive.enabled", "false")  # not used by streaming queries (Spark warns)
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log4j}")
            .config("spark.sql.streaming.stopTimeout", "30s")
            .getOrCreate()
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    return spark


def main():
    instance = env("ETL_HARNESS_INSTANCE")
    topics = env("ETL_HARNESS_TOPICS")
    if env("ETL_HARNESS_PROGRESS") != "sink_table":
        sys.exit('etl-pyspark: Spark keeps its offsets in its checkpoint: use progress = "sink_table"')
    db = connect_sink()
    etl = Etl(env("ETL_HARNESS_TABLE"), db, store_offsets=True)
    checkpoint = os.path.join(env("ETL_HARNESS_STATE_DIR"), "checkpoint")
    resuming = os.path.isdir(os.path.join(checkpoint, "offsets"))

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    began = time.monotonic()
    spark = session()
    log(f"Spark {spark.version} up in {time.monotonic() - began:.1f}s; "
        f"{'resuming from' if resuming else 'new'} checkpoint {checkpoint}")

    applied = [0]

    def apply_batch(df, batch_id):
        rows = df.select("topic", "partition", "offset", "value").collect()
        # The source's rows come partition by partition in offset order already; sorting makes it explicit.
        # Across topics the order does not matter: a row's changes are all in one partition, and a change on
        # either side of the join rebuilds the flat rows it touches.
        messages = sorted((Record(r) for r in rows), key=lambda m: (m.topic(), m.partition(), m.offset()))
        if not messages:
            return
        stored = stored_offsets(db)
        again = sum(1 for m in messages if m.offset() < stored.get((m.topic(), m.partition()), 0))
        etl.apply(messages)
        applied[0] += len(messages)
        replay = f" ({again} applied before: a batch run again after a restart)" if again else ""
        log(f"batch {batch_id}: {len(messages)} records applied{replay}")

    query = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", env("ETL_HARNESS_BOOTSTRAP_SERVERS"))
        .option("subscribe", topics)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", MAX_OFFSETS_PER_TRIGGER)
        .load()
        .writeStream.foreachBatch(apply_batch)
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime="500 milliseconds")
        .queryName(f"etl-pyspark-{instance}")
        .start()
    )
    log(f"streaming {len(topics.split(','))} topics, offsets in the checkpoint and in etl_progress")
    try:
        while not stopping:
            if query.awaitTermination(0.5):
                break  # stopped from elsewhere (a failed query raises here instead)
        if stopping:
            log("SIGTERM: stopping the query")
            query.stop()
    except Exception as e:  # the query failed: StreamingQueryException with the batch's error
        spark.stop()
        sys.exit(f"etl-pyspark: the query failed: {e}")
    spark.stop()
    log(f"stopped after {applied[0]} records")


if __name__ == "__main__":
    main()
