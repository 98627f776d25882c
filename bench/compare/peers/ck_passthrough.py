"""Bare confluent-kafka group consumer: the batch API, JSON decode of every
value, until N messages; auto commit (librdkafka's default, every 5 s);
session timeout 10 s as for every tool.

    ck_passthrough.py --brokers H:P --topic T --n N

Tuned fetch settings (the rest are librdkafka's defaults):
  fetch.wait.max.ms=10, fetch.min.bytes=1, max.partition.fetch.bytes=4 MiB,
  queued.min.messages=500000, queued.max.messages.kbytes=262144;
  consume(num_messages=10000, timeout=1.0).
"""

import json
import sys

from confluent_kafka import Consumer

import common

FETCH = {
    "fetch.wait.max.ms": 10,
    "fetch.min.bytes": 1,
    "max.partition.fetch.bytes": 4 * 1024 * 1024,
    "queued.min.messages": 500000,
    "queued.max.messages.kbytes": 262144,
}


def main():
    brokers = common.arg("brokers")
    topic = common.arg("topic")
    n = common.arg("n", cast=int)
    start = common.now()
    c = Consumer(dict(FETCH, **{
        "bootstrap.servers": brokers,
        "group.id": common.unique("ck-pt"),
        "auto.offset.reset": "earliest",
        # tansu's group join waits half the session timeout (the same for
        # every tool; the join is not part of the rate).
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
    }))
    c.subscribe([topic])
    seen = 0
    id_sum = 0
    first = None
    loads = json.loads
    while seen < n:
        batch = c.consume(num_messages=10000, timeout=1.0)
        if not batch:
            if common.now() - start > 300:
                sys.exit("ck_passthrough: nothing for 300 s after %d of %d" % (seen, n))
            continue
        if first is None:
            # The window starts when the first batch is in hand: its
            # messages are not counted in the rate.
            first = common.now()
            first_batch = len(batch)
        for m in batch:
            if m.error():
                continue
            id_sum += loads(m.value())["id"]
            seen += 1
    last = common.now()
    c.close()
    ok = id_sum == sum(range(n)) and seen == n
    common.result("confluent-kafka", "passthrough", n, first, last, start,
                  rate_count=n - first_batch, exact=ok, first_batch=first_batch)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
