"""Quix Streams apps (natural user code, default settings except a short
session timeout: tansu's group join waits half of it).

    quix_apps.py passthrough --brokers H:P --topic T --n N
    quix_apps.py count       --brokers H:P --topic T --n N   # keyed readings
    quix_apps.py wordcount   --brokers H:P --topic T --n POSTS

* passthrough: JSON values, one `update` per event counting it;
* count:       stateful count per message key (no repartition);
* wordcount:   posts → split (expand) → group_by(word) → stateful count.

Rates run from the first event taken (for the word count: the first post
split) to the N-th counted.

Each app stops itself at the N-th event (words for wordcount) and prints a
RESULT line; the stateful ones check their final counts against the
expected ones (the last value the state returned per key).
"""

import os
import sys
import tempfile

from quixstreams import Application

import common


def main():
    workload = sys.argv[1]
    brokers = common.arg("brokers")
    topic_name = common.arg("topic")
    n = common.arg("n", cast=int)
    start = common.now()
    state_dir = tempfile.mkdtemp(prefix="quix-state-", dir=common.arg("state-root", tempfile.gettempdir()))
    app = Application(
        broker_address=brokers,
        consumer_group=common.unique("quix-" + workload),
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
        consumer_extra_config={"session.timeout.ms": 10000, "heartbeat.interval.ms": 1000},
    )
    topic = app.topic(topic_name, value_deserializer="json", key_deserializer="json")
    sdf = app.dataframe(topic)
    finals = {}

    if workload == "wordcount":
        target = common.total_words(n)
        expected = common.expected_word_counts(n)
    elif workload == "count":
        target = n
        expected = common.expected_keyed_counts(n)
    else:
        target = n
        expected = None
    win = common.Window(target)

    def tick():
        if win.tick():
            app.stop()

    def count(value, key, timestamp, headers, state):
        # Counted per word (the value) in the word count, else per message key.
        c = state.get("count", 0) + 1
        state.set("count", c)
        finals[value if workload == "wordcount" else key] = c
        tick()
        return c

    if workload == "passthrough":
        def on_value(value):
            win.id_sum += value["id"]
            tick()
        sdf = sdf.update(on_value)
    elif workload == "count":
        sdf = sdf.apply(count, stateful=True, metadata=True)
    elif workload == "wordcount":
        def split(post):
            # The window starts at the first post taken, not the first word counted.
            win.begin()
            return post.split()
        sdf = sdf.apply(split, expand=True)
        sdf = sdf.group_by(lambda word: word, name="word")
        sdf = sdf.apply(count, stateful=True, metadata=True)
    else:
        sys.exit("unknown workload %r" % workload)

    app.run()
    if win.last is None:
        sys.exit("quix %s: stopped after %d of %d" % (workload, win.seen, target))
    if workload == "passthrough":
        exact = win.id_sum == sum(range(n))
    else:
        exact = finals == expected
    common.result("quixstreams", workload, target, win.first, win.last, start, exact=exact)
    sys.exit(0 if exact else 1)


if __name__ == "__main__":
    main()
