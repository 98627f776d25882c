//! The word-count app of Faust's "Tasks, Timers, Web Views, and CLI Commands"
//! guide: posts → `shuffle_words` → `count_words` (via `agent.send`) → the
//! `word_counts` table.
//!
//! ```text
//! cargo run --example word_count -- worker -l info
//! ```
//!
//! The worker serves `http://127.0.0.1:6066/count/?word=fox` (the guide's
//! page), the dashboard at `/`, and `/metrics`.
//!
//! On `memory://` (the default) a timer feeds sample posts so the demo shows
//! work with nothing installed; every few seconds it logs how many words and
//! distinct words it has counted. `cargo run --example word_count -- agents`
//! lists the agents. Point it at another broker with `FAUSTUS_BROKER=...`.
//!
//! Environment of the demo (besides the `FAUSTUS_<SETTING>` variables of
//! every app, e.g. `FAUSTUS_ID` for the app id):
//!
//! * `FAUSTUS_DEMO_FEED=0|1`: turn the sample-post timer off or on (default:
//!   on only for `memory://`);
//! * `FAUSTUS_DEMO_POSTS_TOPIC=name`: read (and `produce` to) this topic
//!   instead of `posts`, so runs sharing a broker stay apart (the
//!   real-broker tests in `tests/kafka_word_count.rs` use it).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::prelude::*;
use serde::{Deserialize, Serialize};

/// What `shuffle_words` sends to `count_words`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Word {
    /// The word.
    pub word: String,
}

/// The app's parts, for tests and timers.
#[derive(Clone)]
pub struct WordCount {
    /// The app.
    pub app: App,
    /// Blog posts (key: post id, value: body).
    pub posts: Topic<String, String>,
    /// The counting agent (keyed by word, so counts are copartitioned).
    pub count_words: Agent<String, Word>,
    /// Word → count.
    pub word_counts: Table<String, u64>,
    /// Words counted by this worker.
    pub counted: Arc<AtomicU64>,
}

/// The posts topic: `FAUSTUS_DEMO_POSTS_TOPIC`, or `posts`.
pub fn posts_topic_name() -> String {
    std::env::var("FAUSTUS_DEMO_POSTS_TOPIC")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| "posts".to_string())
}

/// Define the topics, agents and table on `app`.
pub fn build(app: App) -> faustus::Result<WordCount> {
    let posts = app.topic::<String, String>(posts_topic_name()).build()?;
    let word_counts = app
        .table::<String, u64>("word_counts")
        .with_default()
        .help("Keep count of words (str to int).")
        .build()?;

    let counted = Arc::new(AtomicU64::new(0));
    let count_words = app
        .agent::<String, Word>("count_words")
        .help("Count words from blog post article body.")
        .build({
            let word_counts = word_counts.clone();
            let counted = counted.clone();
            move |mut words| {
                let word_counts = word_counts.clone();
                let counted = counted.clone();
                async move {
                    while let Some(word) = words.next().await {
                        word_counts.update(&word.word, |n| *n += 1).await?;
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
            }
        })?;

    app.agent::<String, String>("shuffle_words")
        .on(&posts)
        .help("Split posts into words and send each to count_words.")
        .build({
            let count_words = count_words.clone();
            move |mut posts| {
                let count_words = count_words.clone();
                async move {
                    while let Some(post) = posts.next().await {
                        for word in post.split_whitespace() {
                            let word = word.to_lowercase();
                            // Returns once the producer accepted the record
                            // (no broker round trip per word); the commit of
                            // this post waits for its delivery.
                            count_words.send(word.clone(), Word { word }).await?;
                        }
                    }
                    Ok(())
                }
            }
        })?;

    // The guide's page, routed to the worker that holds the word's table
    // partition: GET /count/?word=fox → {"fox": 3}.
    app.page(
        "/count/",
        app.table_route(&word_counts, "word", {
            let word_counts = word_counts.clone();
            move |_app, request| {
                let word_counts = word_counts.clone();
                async move {
                    let word = request.require("word")?.to_string();
                    let n = word_counts.get_or_default(&word).await?;
                    Ok(faustus::web::json(&serde_json::json!({ word: n })))
                }
            }
        }),
    )?;

    Ok(WordCount {
        app,
        posts,
        count_words,
        word_counts,
        counted,
    })
}

/// The sample corpus: post `i` is `POSTS[i % POSTS.len()]`.
pub const POSTS: &[&str] = &[
    "the quick brown fox jumps over the lazy dog",
    "faust is a stream processing library porting the ideas of kafka streams to python",
    "faustus brings faust to rust with agents streams and tables",
    "tables are partitioned and backed by a changelog topic",
    "every worker of one app shares the partitions of its topics",
];

/// The demo's timers: sample posts (only on `memory://`, where nothing else
/// feeds the topic) and a progress report every 3 s.
pub fn demo_timers(wc: &WordCount) {
    // Nothing else feeds a private in-memory broker; on a shared broker the
    // `produce` command does (FAUSTUS_DEMO_FEED=0 turns the feed off).
    let feed = std::env::var("FAUSTUS_DEMO_FEED").map(|v| v != "0");
    if feed.unwrap_or_else(|_| wc.app.settings().broker.starts_with("memory://")) {
        let next = Arc::new(AtomicU64::new(0));
        let posts = wc.posts.clone();
        wc.app.timer(
            "feed_sample_posts",
            Duration::from_millis(200),
            move |_app| {
                let posts = posts.clone();
                let next = next.clone();
                async move {
                    for _ in 0..5 {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let post = POSTS[(i as usize) % POSTS.len()];
                        posts.send(format!("post-{i}"), post.to_string()).await?;
                    }
                    Ok(())
                }
            },
        );
    }
    let (word_counts, counted) = (wc.word_counts.clone(), wc.counted.clone());
    wc.app.timer("report", Duration::from_secs(3), move |_app| {
        let word_counts = word_counts.clone();
        let counted = counted.clone();
        async move {
            let distinct = word_counts.len().await?;
            let the = word_counts.get(&"the".to_string()).await?.unwrap_or(0);
            let words = counted.load(Ordering::Relaxed);
            tracing::info!(words, distinct, the, "word count progress");
            Ok(())
        }
    });
}

/// The `produce` command (as in Faust's `tasks-timers-web-cli.rst`): send
/// sample posts to the posts topic, from another process than the workers.
pub fn commands(wc: &WordCount) {
    use faustus::clap::{value_parser, Arg, Command};
    let posts = wc.posts.clone();
    wc.app.command(
        Command::new("produce")
            .about("Send sample posts (post i is sample i mod 5) to the posts topic")
            .arg(
                Arg::new("max-messages")
                    .long("max-messages")
                    .value_parser(value_parser!(u64))
                    .help("Send at most N posts (default: until stopped)"),
            )
            .arg(
                Arg::new("start")
                    .long("start")
                    .value_parser(value_parser!(u64))
                    .default_value("0")
                    .help("Number of the first post"),
            )
            .arg(
                Arg::new("max-latency")
                    .long("max-latency")
                    .value_parser(latency_secs)
                    .default_value("0")
                    .help("Wait up to this many seconds between posts"),
            ),
        move |_app, args| {
            let posts = posts.clone();
            async move {
                let max = args.get_one::<u64>("max-messages").copied();
                let start = args.get_one::<u64>("start").copied().unwrap_or(0);
                let latency = args.get_one::<f64>("max-latency").copied().unwrap_or(0.0);
                let mut i = start;
                while max.is_none_or(|m| i < start + m) {
                    let post = POSTS[(i as usize) % POSTS.len()];
                    posts.send(format!("post-{i}"), post.to_string()).await?;
                    if (i - start) % 10_000 == 0 {
                        println!("+SEND {}", i - start);
                    }
                    if latency > 0.0 {
                        let pause = latency * ((i % 7) as f64 / 7.0);
                        // `latency` is checked (0..=3600 s), so this cannot fail.
                        let pause = Duration::try_from_secs_f64(pause).unwrap_or_default();
                        tokio::time::sleep(pause).await;
                    }
                    i += 1;
                }
                println!("sent {} posts", i - start);
                Ok(())
            }
        },
    );
}

/// `--max-latency`: seconds, from 0 to an hour.
fn latency_secs(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(s) if (0.0..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!("expected seconds from 0 to 3600, got {v:?}")),
    }
}

fn main() -> ExitCode {
    faustus::main_with(
        faustus::app("word-counts")
            .broker("memory://")
            .store("redb://")
            .build()
            .and_then(build)
            .map(|wc| {
                demo_timers(&wc);
                commands(&wc);
                wc.app
            }),
    )
}
