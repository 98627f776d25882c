"""Faustus's word count: the README's `word_count` example (redb store) run
as a worker process against the broker, measured from outside.

    faustus_wordcount.py --bin target/release/examples/word_count \
        --brokers H:P --topic POSTS_TOPIC --n POSTS --workdir DIR

The posts topic is pre-produced (produce.py --kind posts: the example's own
corpus and encoding). The worker runs with FAUSTUS_DEMO_FEED=0, its own app
id, data directory and web port, and the broker URL
kafka://H:P?session.timeout.ms=10000&heartbeat.interval.ms=1000 (the same
session timeout as every tool: tansu's join waits half of it).

/metrics is polled every 50 ms: the first event is the first poll where
`faustus_agent_events_total` of `shuffle_words` (posts) is above 0, the N-th
the first where that of `count_words` reaches the number of words (each time taken as the midpoint
between that poll and the one before). Then the time until every word record
and post is committed, and exactness: GET /count/?word=W for every word must
equal the expected count. Standard library only.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import common

POLL = 0.05


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def metrics(port):
    try:
        text = get("http://127.0.0.1:%d/metrics" % port, timeout=2.0)
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r'^(\w+)(\{[^}]*\})?\s+(\S+)$', line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def committed(ms, topic):
    prefix = 'faustus_committed_offset{topic="%s",' % topic
    return sum(v for k, v in ms.items() if k.startswith(prefix))


def vm_hwm_mib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return None


def main():
    binary = common.arg("bin")
    brokers = common.arg("brokers")
    topic = common.arg("topic")
    n = common.arg("n", cast=int)
    workdir = common.arg("workdir")
    timeout = common.arg("timeout", 600, float)
    os.makedirs(workdir, exist_ok=True)
    app_id = common.unique("faustus-wc")
    port = free_port()
    target = common.total_words(n)
    expected = common.expected_word_counts(n)
    env = dict(os.environ)
    env.update({
        "FAUSTUS_BROKER": "kafka://%s?session.timeout.ms=10000&heartbeat.interval.ms=1000" % brokers,
        "FAUSTUS_ID": app_id,
        "FAUSTUS_DEMO_FEED": "0",
        "FAUSTUS_DEMO_POSTS_TOPIC": topic,
        "FAUSTUS_DATADIR": os.path.join(workdir, "data"),
        "FAUSTUS_WEB_PORT": str(port),
        "FAUSTUS_WEB_HOST": "127.0.0.1",
        "NO_COLOR": "1",
    })
    env.pop("RUST_LOG", None)
    log_path = os.path.join(workdir, "worker.log")
    log = open(log_path, "w")
    start = common.now()
    proc = subprocess.Popen([binary, "worker", "-l", "info"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    first = last = done_commit = None
    prev_t = start
    exact = False
    rss = None
    try:
        deadline = start + timeout
        while True:
            if proc.poll() is not None:
                sys.exit("faustus worker exited (%s); see %s" % (proc.returncode, log_path))
            if common.now() > deadline:
                sys.exit("faustus word count: not done within %.0f s; see %s" % (timeout, log_path))
            t = common.now()
            ms = metrics(port)
            if ms is not None:
                counted = ms.get('faustus_agent_events_total{agent="count_words"}', 0)
                posts = ms.get('faustus_agent_events_total{agent="shuffle_words"}', 0)
                if first is None and (posts > 0 or counted > 0):
                    first = (prev_t + t) / 2
                if last is None and counted >= target:
                    last = (prev_t + t) / 2
                if last is not None:
                    if (committed(ms, app_id + "-count_words") >= target
                            and committed(ms, topic) >= n):
                        done_commit = t
                        break
            prev_t = t
            time.sleep(POLL)
        rss = vm_hwm_mib(proc.pid)
        # Exactness, through the guide's page (one worker holds every partition).
        for attempt in range(50):
            got = {}
            for w in expected:
                body = json.loads(get("http://127.0.0.1:%d/count/?word=%s" % (port, w)))
                got[w] = body.get(w)
            if got == expected:
                exact = True
                break
            time.sleep(0.2)
        if not exact:
            bad = {w: (got.get(w), c) for w, c in expected.items() if got.get(w) != c}
            print("faustus word count: counts differ (word: got, want): %s" % bad, file=sys.stderr)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    common.result("faustus", "wordcount", target, first, last, start, exact=exact,
                  committed_s=round(done_commit - first, 3), worker_peak_rss_mib=rss)
    sys.exit(0 if exact else 1)


if __name__ == "__main__":
    main()
