"""Python Faust (faust-streaming) apps, natural user code, memory store,
worker log level WARNING, session timeout 10 s (as for every tool).

    faust_apps.py passthrough --brokers H:P --topic T --n N
    faust_apps.py wordcount   --brokers H:P --topic T --n POSTS [--no-hop]

* passthrough: an agent iterating a JSON topic (decode, ack, commit);
* wordcount:   the guide's app: `shuffle_words` splits each post and
               `await count_words.send(key=word, value=word)` (the repartition
               hop through the agent's topic); `count_words` does
               `word_counts[word] += 1` on a Table (changelog on the broker).
               --no-hop counts in the first agent instead (no repartition).

Rates run from the first event taken (for the word count: the first post)
to the N-th counted. The worker stops itself at the N-th event (word) and prints a RESULT line;
the word count compares the table with the expected counts.
"""

import asyncio
import logging
import os
import sys

import faust

import common


def main():
    workload = sys.argv[1]
    brokers = common.arg("brokers")
    topic_name = common.arg("topic")
    n = common.arg("n", cast=int)
    no_hop = "--no-hop" in sys.argv
    start = common.now()
    app = faust.App(
        common.unique("faust-" + workload),
        broker="kafka://" + brokers,
        store="memory://",
        topic_partitions=common.PARTITIONS,
        web_enabled=False,
        datadir=common.arg("datadir", "/tmp/faust-bench-data"),
        # tansu's group join waits half the session timeout (the same 10 s
        # for every tool; the join is not part of the rates).
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
    )
    topic = app.topic(topic_name, key_type=str, value_type=str if workload == "wordcount" else None,
                      key_serializer="json", value_serializer="json")
    target = common.total_words(n) if workload == "wordcount" else n
    win = common.Window(target)

    def finish(exact):
        common.result("faust", workload + (" (no hop)" if no_hop else ""), target,
                      win.first, win.last, start, exact=exact)
        sys.stdout.flush()
        sys.stderr.flush()
        # A Faust worker's shutdown can take long: the result is printed.
        os._exit(0 if exact else 1)

    if workload == "passthrough":
        @app.agent(topic)
        async def passthrough(stream):
            async for value in stream:
                win.id_sum += value["id"]
                if win.tick():
                    finish(win.id_sum == sum(range(n)))

    elif workload == "wordcount":
        word_counts = app.Table("word_counts", default=int, partitions=common.PARTITIONS)
        expected = common.expected_word_counts(n)

        def check():
            got = {k: v for k, v in word_counts.items()}
            return got == expected

        if no_hop:
            @app.agent(topic)
            async def count_posts(posts):
                async for post in posts:
                    for word in post.split():
                        word_counts[word] += 1
                        if win.tick():
                            finish(check())
        else:
            @app.agent(key_type=str, value_type=str)
            async def count_words(words):
                async for word in words:
                    word_counts[word] += 1
                    if win.tick():
                        finish(check())

            @app.agent(topic)
            async def shuffle_words(posts):
                async for post in posts:
                    # The window starts at the first post taken.
                    win.begin()
                    for word in post.split():
                        await count_words.send(key=word, value=word)
    else:
        sys.exit("unknown workload %r" % workload)

    from faust.worker import Worker
    worker = Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
