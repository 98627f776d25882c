//! `/metrics`: the worker's figures in the Prometheus text format (0.0.4),
//! encoded by `prometheus-client`.
//!
//! Why `prometheus-client` (over the `metrics` facade with
//! `metrics-exporter-prometheus`): the figures already live in the app's
//! `Monitor` (atomic counters, labelled figures, pre-aggregated timings), and
//! what `/metrics` needs is an encoder for a snapshot taken per scrape.
//! `prometheus-client` has exactly that — a `Collector` asked to describe
//! its families on each scrape, into a `Registry` of our own (no global
//! recorder, nothing installed process-wide, several apps in one process
//! stay apart) — and its `prometheus_text` encoder writes the classic text
//! format with the escaping of help texts and label values done for us. The
//! `metrics` exporter is a global recorder fed by observations as they
//! happen: it would need every figure re-recorded into it (or a recorder per
//! scrape) and cannot take a pre-aggregated count/sum/max.
//!
//! Names, help texts and labels are those of the hand-written text this
//! replaced, with one change the crate forces: `prometheus-client` has no
//! summary type, so a timing (`faustus_commit_seconds`,
//! `faustus_processing_seconds`, `faustus_timer_seconds`) is a histogram
//! with the single `+Inf` bucket (`_bucket{le="+Inf"}`, `_sum`, `_count`:
//! the same `_sum`/`_count` series as before) and its largest observation,
//! once the `{quantile="1"}` sample, is the gauge `<name>_max`.

use std::fmt;

use faustus_core::monitor::{Figure, MonitorSnapshot, RecoveryState};
use faustus_core::App;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The worker-wide counters: (name, snapshot field, help). Counter names
/// are given without the `_total` the encoder appends.
fn simple(snap: &MonitorSnapshot) -> [(&'static str, u64, &'static str); 10] {
    [
        (
            "faustus_messages_received_all",
            snap.messages_received,
            "Messages the consumer delivered.",
        ),
        (
            "faustus_events_acked",
            snap.events_acked,
            "Events acknowledged by streams.",
        ),
        (
            "faustus_messages_sent_all",
            snap.messages_sent,
            "Records sent through topics.",
        ),
        (
            "faustus_decode_errors",
            snap.decode_errors,
            "Messages whose key or value could not be decoded.",
        ),
        (
            "faustus_agent_errors",
            snap.agent_errors,
            "Agent failures (errors and panics).",
        ),
        ("faustus_commits", snap.commits, "Offset commits."),
        ("faustus_rebalances", snap.rebalances, "Rebalances seen."),
        (
            "faustus_recovered_records",
            snap.recovered_records,
            "Changelog records applied during table recovery.",
        ),
        (
            "faustus_dead_letters",
            snap.dead_letters,
            "Events sent to a dead-letter topic.",
        ),
        (
            "faustus_livelock_warnings",
            snap.livelock_warnings,
            "Warnings that a committed offset stalled while processing.",
        ),
    ]
}

/// Help texts of the labelled figures the monitor holds.
const HELPS: [(&str, &str); 9] = [
    (
        "faustus_messages_received_total",
        "Messages received, by topic.",
    ),
    ("faustus_messages_sent_total", "Records sent, by topic."),
    (
        "faustus_agent_events_total",
        "Events an agent finished processing, by agent.",
    ),
    (
        "faustus_committed_offset",
        "Last committed offset, by partition.",
    ),
    (
        "faustus_consumer_lag",
        "High watermark minus committed offset, by partition.",
    ),
    ("faustus_commit_seconds", "Time to flush and commit."),
    (
        "faustus_processing_seconds",
        "Time from delivery of a batch until every stream processed it, by topic.",
    ),
    ("faustus_timer_seconds", "Timer run time, by timer."),
    (
        "faustus_timer_overruns_total",
        "Timer runs longer than their interval, by timer.",
    ),
];

/// Help of a labelled figure the table above does not name.
const DEFAULT_HELP: &str = "Faustus figure.";

type Labels = Vec<(String, String)>;

/// Everything one scrape shows, read from the app before encoding.
#[derive(Debug)]
struct Scrape {
    snap: MonitorSnapshot,
    /// (agent, topic, recent failures)
    agents: Vec<(String, String, usize)>,
    assigned: usize,
    ready: bool,
    leader: bool,
    /// (table, keys stored in the partitions served here)
    table_keys: Vec<(String, u64)>,
    /// (table, records to replay, replayed, running)
    recovery: Vec<(String, u64, u64, bool)>,
    figures: Vec<(&'static str, Labels, Figure)>,
}

/// `/metrics` of `app` in the Prometheus text format (version 0.0.4).
pub async fn render(app: &App) -> String {
    let monitor = app.monitor();
    let failures = monitor.failures();
    let agents = app
        .agents()
        .into_iter()
        .map(|a| {
            let n = failures.iter().filter(|f| f.agent == a.name).count();
            (a.name, a.topic, n)
        })
        .collect();
    let mut table_keys = Vec::new();
    for t in app.tables() {
        if let Ok(n) = app.table_local_len(&t.name).await {
            table_keys.push((t.name, n));
        }
    }
    let scrape = Scrape {
        snap: monitor.snapshot(),
        agents,
        assigned: app.assignment().len(),
        ready: app.is_ready(),
        leader: app.is_leader(),
        table_keys,
        recovery: monitor
            .recovery_progress()
            .into_iter()
            .map(|r| {
                let running = r.state == RecoveryState::Running;
                (r.table, r.total, r.done, running)
            })
            .collect(),
        figures: monitor
            .figures()
            .into_iter()
            .map(|(n, l, f)| (n, parse_labels(&l), f))
            .collect(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        // Writing into a String does not fail; say so if it ever does.
        tracing::error!(error = %e, "encoding /metrics failed");
    }
    out
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        for (name, v, help) in simple(&self.snap) {
            enc.encode_descriptor(name, help, None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
        }
        let mut agents = enc.encode_descriptor(
            "faustus_agents",
            "Agents defined, by name and topic.",
            None,
            MetricType::Gauge,
        )?;
        for (agent, topic, failures) in &self.agents {
            let labels = [
                ("agent", agent.clone()),
                ("topic", topic.clone()),
                ("recent_failures", failures.to_string()),
            ];
            agents.encode_family(&labels)?.encode_gauge(&1i64)?;
        }
        gauge(
            &mut enc,
            "faustus_assigned_partitions",
            "Partitions this worker holds.",
            self.assigned as i64,
        )?;
        gauge(
            &mut enc,
            "faustus_ready",
            "1 once the worker has recovered and is processing.",
            i64::from(self.ready),
        )?;
        gauge(
            &mut enc,
            "faustus_leader",
            "1 while this worker is the leader.",
            i64::from(self.leader),
        )?;
        let mut keys = enc.encode_descriptor(
            "faustus_table_keys",
            "Keys of each table in the partitions this worker serves.",
            None,
            MetricType::Gauge,
        )?;
        for (table, n) in &self.table_keys {
            keys.encode_family(&[("table", table.as_str())])?
                .encode_gauge(n)?;
        }
        type Pick = fn(&(String, u64, u64, bool)) -> u64;
        let recovery: [(&str, &str, Pick); 3] = [
            (
                "faustus_recovery_records_total",
                "Changelog records the latest recovery of each table has to replay.",
                |r| r.1,
            ),
            (
                "faustus_recovery_records_done",
                "Changelog records that recovery replayed so far.",
                |r| r.2,
            ),
            (
                "faustus_recovery_running",
                "1 while the table's recovery runs.",
                |r| u64::from(r.3),
            ),
        ];
        for (name, help, pick) in recovery {
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for r in &self.recovery {
                family
                    .encode_family(&[("table", r.0.as_str())])?
                    .encode_gauge(&pick(r))?;
            }
        }
        self.encode_figures(&mut enc)
    }
}

impl Scrape {
    /// The monitor's labelled figures, one family per name (they come
    /// sorted by name); a timing adds its `<name>_max` gauge family after.
    fn encode_figures(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let mut start = 0;
        while start < self.figures.len() {
            let name = self.figures[start].0;
            let end = self.figures[start..]
                .iter()
                .position(|(n, _, _)| *n != name)
                .map_or(self.figures.len(), |i| start + i);
            let run = &self.figures[start..end];
            start = end;
            let help = HELPS
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(DEFAULT_HELP, |(_, h)| *h);
            let kind = match run[0].2 {
                Figure::Counter(_) => MetricType::Counter,
                Figure::Timing { .. } => MetricType::Histogram,
                _ => MetricType::Gauge,
            };
            // The encoder appends `_total` to counter names.
            let family_name = match kind {
                MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
                _ => name,
            };
            let mut family = enc.encode_descriptor(family_name, help, None, kind)?;
            for (_, labels, figure) in run {
                let metric = family.encode_family(labels)?;
                encode_figure(metric, *figure)?;
            }
            if kind == MetricType::Histogram {
                let max_name = format!("{name}_max");
                let max_help = format!("The largest observation of {name}.");
                let mut max =
                    enc.encode_descriptor(&max_name, &max_help, None, MetricType::Gauge)?;
                for (_, labels, figure) in run {
                    if let Figure::Timing { max: m, .. } = figure {
                        encode_f64_gauge(max.encode_family(labels)?, *m)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn encode_figure(mut metric: MetricEncoder, figure: Figure) -> fmt::Result {
    match figure {
        Figure::Counter(c) => metric.encode_counter::<NoLabelSet, _, u64>(&c, None),
        Figure::Gauge(g) => encode_f64_gauge(metric, g),
        Figure::Timing { count, sum, .. } => {
            metric.encode_histogram::<NoLabelSet>(sum, count, &[], None)
        }
        _ => Ok(()),
    }
}

/// A gauge family of one unlabelled sample.
fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

/// The largest integer an `f64` holds exactly.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// A float gauge, written as an integer when it is one (offsets, lag:
/// `42`, as before, not `42.0`).
fn encode_f64_gauge(mut metric: MetricEncoder, v: f64) -> fmt::Result {
    if v.fract() == 0.0 && v.abs() <= EXACT {
        metric.encode_gauge(&(v as i64))
    } else {
        metric.encode_gauge(&v)
    }
}

/// The monitor's label text (`topic="posts",partition="0"`, values escaped
/// as Prometheus does) as pairs; the encoder escapes the values again.
fn parse_labels(text: &str) -> Labels {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let key = key.trim_start_matches(',').trim().to_string();
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key, value));
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_through_the_monitor_text() {
        let text = format!(
            "{},partition=\"3\"",
            faustus_core::monitor::topic_labels("a\"b\\c\nd")
        );
        assert_eq!(
            parse_labels(&text),
            vec![
                ("topic".to_string(), "a\"b\\c\nd".to_string()),
                ("partition".to_string(), "3".to_string())
            ]
        );
        assert!(parse_labels("").is_empty());
    }

    #[test]
    fn figures_keep_their_names_helps_and_labels() {
        let figures = vec![
            (
                "faustus_commit_seconds",
                Vec::new(),
                Figure::Timing {
                    count: 2,
                    sum: 0.5,
                    max: 0.375,
                },
            ),
            (
                "faustus_committed_offset",
                parse_labels("topic=\"posts\",partition=\"0\""),
                Figure::Gauge(42.0),
            ),
            (
                "faustus_messages_received_total",
                parse_labels("topic=\"po\\\"sts\""),
                Figure::Counter(7),
            ),
            ("faustus_odd", Vec::new(), Figure::Gauge(0.25)),
        ];
        let scrape = Scrape {
            snap: MonitorSnapshot::default(),
            agents: vec![("count".into(), "posts".into(), 1)],
            assigned: 3,
            ready: true,
            leader: false,
            table_keys: vec![("counts".into(), 4)],
            recovery: vec![("counts".into(), 10, 7, true)],
            figures,
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        for needle in [
            "# HELP faustus_messages_received_all_total Messages the consumer delivered.\n# TYPE faustus_messages_received_all_total counter\nfaustus_messages_received_all_total 0\n",
            "# TYPE faustus_decode_errors_total counter\nfaustus_decode_errors_total 0\n",
            "faustus_agents{agent=\"count\",topic=\"posts\",recent_failures=\"1\"} 1\n",
            "faustus_assigned_partitions 3\n",
            "faustus_ready 1\n",
            "faustus_leader 0\n",
            "faustus_table_keys{table=\"counts\"} 4\n",
            "# TYPE faustus_recovery_records_total gauge\nfaustus_recovery_records_total{table=\"counts\"} 10\n",
            "faustus_recovery_records_done{table=\"counts\"} 7\n",
            "faustus_recovery_running{table=\"counts\"} 1\n",
            "# HELP faustus_commit_seconds Time to flush and commit.\n# TYPE faustus_commit_seconds histogram\n",
            "faustus_commit_seconds_bucket{le=\"+Inf\"} 2\nfaustus_commit_seconds_sum 0.5\nfaustus_commit_seconds_count 2\n",
            "# TYPE faustus_commit_seconds_max gauge\nfaustus_commit_seconds_max 0.375\n",
            "# HELP faustus_committed_offset Last committed offset, by partition.\n",
            "faustus_committed_offset{topic=\"posts\",partition=\"0\"} 42\n",
            "# HELP faustus_messages_received_total Messages received, by topic.\n# TYPE faustus_messages_received_total counter\n",
            "faustus_messages_received_total{topic=\"po\\\"sts\"} 7\n",
            "# HELP faustus_odd Faustus figure.\n# TYPE faustus_odd gauge\nfaustus_odd 0.25\n",
        ] {
            assert!(out.contains(needle), "{needle} missing in\n{out}");
        }
        assert!(!out.contains("_total_total"), "{out}");
    }
}
