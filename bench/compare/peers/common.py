"""What the peer programs share: the data they read, the expected results,
and the result line they print.  Standard library only (it is imported from
each tool's own venv)."""

import json
import os
import random
import sys
import time

PARTITIONS = 8

# The word-count corpus: post i is POSTS[i % 5] (the same five sentences as
# examples/word_count.rs, whose `produce` command sends them).
POSTS = [
    "the quick brown fox jumps over the lazy dog",
    "faust is a stream processing library porting the ideas of kafka streams to python",
    "faustus brings faust to rust with agents streams and tables",
    "tables are partitioned and backed by a changelog topic",
    "every worker of one app shares the partitions of its topics",
]

KINDS = ["temperature", "humidity", "pressure", "voltage"]

# Keys of the `keyed` readings (stateful count per key).
KEYED_KEYS = 1000


def reading(i, rng):
    """The ~100-byte JSON value of the pass-through workloads (the shape of
    bench/src/main.rs's `Reading`)."""
    return {
        "id": i,
        "device": "device-%05d" % rng.randrange(100_000),
        "kind": KINDS[i % len(KINDS)],
        "value": round(rng.uniform(0.0, 100.0), 3),
        "ok": rng.random() < 0.9,
        "ts": 1_700_000_000_000 + i,
    }


def readings(n, seed=42):
    rng = random.Random(seed)
    for i in range(n):
        yield reading(i, rng)


def post(i):
    return POSTS[i % len(POSTS)]


def expected_word_counts(n_posts):
    counts = {}
    for i in range(min(n_posts, len(POSTS))):
        reps = (n_posts - i + len(POSTS) - 1) // len(POSTS)
        for w in POSTS[i].split():
            counts[w] = counts.get(w, 0) + reps
    return counts


def total_words(n_posts):
    return sum(expected_word_counts(n_posts).values())


def keyed_key(i):
    return "device-%05d" % (i % KEYED_KEYS)


def expected_keyed_counts(n):
    counts = {}
    for i in range(n):
        k = keyed_key(i)
        counts[k] = counts.get(k, 0) + 1
    return counts


def result(tool, workload, count, first, last, start, rate_count=None, **extra):
    """Print the machine-readable result line: rate from the first to the
    N-th event (`rate_count` events in that window when the first ones came
    in one batch); `join_s` is start → first event (mostly the group join)."""
    seconds = last - first
    rc = count if rate_count is None else rate_count
    line = {
        "tool": tool,
        "workload": workload,
        "count": count,
        "seconds": round(seconds, 4),
        "rate": round(rc / seconds, 1) if seconds > 0 else None,
        "join_s": round(first - start, 3),
    }
    line.update(extra)
    print("RESULT " + json.dumps(line, sort_keys=True), flush=True)


class Window:
    """The window a rate is measured over: when the first event was taken
    and when the target-th was counted (plus the pass-through's id sum)."""

    def __init__(self, target):
        self.target = target
        self.seen = 0
        self.first = None
        self.last = None
        self.id_sum = 0

    def begin(self):
        """Start the window (the first time only)."""
        if self.first is None:
            self.first = now()

    def tick(self):
        """Count one event; True when it is the target-th."""
        self.seen += 1
        self.begin()
        if self.seen == self.target:
            self.last = now()
            return True
        return False


def now():
    return time.monotonic()


def arg(name, default=None, cast=str):
    """--name value from sys.argv."""
    flag = "--" + name
    if flag in sys.argv:
        return cast(sys.argv[sys.argv.index(flag) + 1])
    if default is None:
        sys.exit("missing %s" % flag)
    return default


def unique(prefix):
    return "%s-%d-%d" % (prefix, os.getpid(), int(time.time() * 1000) % 1_000_000_000)
