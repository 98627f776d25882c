"""Create a fresh topic and pre-produce a workload's input into it with a
bare confluent-kafka producer (batched, all deliveries awaited).

    produce.py --brokers H:P --topic T --kind readings|keyed|posts --n N

* readings: ~100-byte JSON values, no key, round-robin over the partitions;
* keyed:    the same values keyed by "device-%05d" % (i % 1000) (JSON string
            key, default partitioner: one key, one partition);
* posts:    the word-count corpus, key "post-i", value the post (both JSON
            strings, as the word_count example's `produce` command sends them).

Prints a RESULT line (records/s of the pre-produce, for reference)."""

import json
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import common


def create_topic(brokers, topic, partitions):
    admin = AdminClient({"bootstrap.servers": brokers})
    # tansu reports only the configs set at creation, and Quix Streams reads
    # retention.ms of its input topics: set Kafka's default explicitly.
    config = {"retention.ms": "604800000", "retention.bytes": "-1"}
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config)])
    for _, f in fs.items():
        f.result(timeout=60)
    # Wait until the metadata shows every partition.
    deadline = time.time() + 60
    while time.time() < deadline:
        md = admin.list_topics(topic=topic, timeout=10)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return
        time.sleep(0.2)
    sys.exit("topic %s did not show %d partitions" % (topic, partitions))


def main():
    brokers = common.arg("brokers")
    topic = common.arg("topic")
    kind = common.arg("kind")
    n = common.arg("n", cast=int)
    partitions = common.arg("partitions", common.PARTITIONS, int)
    create_topic(brokers, topic, partitions)
    p = Producer({
        "bootstrap.servers": brokers,
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 1000000,
        "partitioner": "murmur2_random",
    })
    failed = []

    def on_delivery(err, _msg):
        if err is not None:
            failed.append(err)

    dumps = lambda v: json.dumps(v, separators=(",", ":")).encode()
    start = time.monotonic()
    for i in range(n):
        if kind == "readings":
            value, key, part = dumps(next_reading()), None, i % partitions
        elif kind == "keyed":
            value, key, part = dumps(next_reading()), dumps(common.keyed_key(i)), None
        elif kind == "posts":
            value, key, part = dumps(common.post(i)), dumps("post-%d" % i), None
        else:
            sys.exit("unknown kind %r" % kind)
        kw = {"value": value, "key": key, "on_delivery": on_delivery}
        if part is not None:
            kw["partition"] = part
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.01)
        if i % 10000 == 0:
            p.poll(0)
    left = p.flush(120)
    end = time.monotonic()
    if left or failed:
        sys.exit("produce to %s: %d undelivered, %d failed (%s)" % (topic, left, len(failed), failed[:3]))
    common.result("confluent-kafka", "pre-produce " + kind, n, start, end, start, topic=topic)


_gen = None


def next_reading():
    global _gen
    if _gen is None:
        _gen = common.readings(10**12)
    return next(_gen)


if __name__ == "__main__":
    main()
