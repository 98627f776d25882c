//! The word-count app of Faust's "Tasks, Timers, Web Views, and CLI Commands"
//! guide: posts → `shuffle_words` → `count_words` (via `agent.send`) → the
//! `word_counts` table.
//!
//! ```text
//! cargo run --example word_count -- worker -l info
//! ```
//!
//! On `memory://` (the default) a timer feeds sample posts so the demo shows
//! work with nothing installed; every few seconds it logs how many words and
//! distinct words it has counted. Point it at Kafka with
//! `FAUSTUS_BROKER=kafka://localhost:9092`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Word {
    word: String,
}

const POSTS: &[&str] = &[
    "the quick brown fox jumps over the lazy dog",
    "faust is a stream processing library porting the ideas of kafka streams to python",
    "faustus brings faust to rust with agents streams and tables",
    "tables are partitioned and backed by a changelog topic",
    "every worker of one app shares the partitions of its topics",
];

fn build() -> faustus::Result<App> {
    let app = faustus::app("word-counts")
        .broker("memory://")
        .store("memory://")
        .topic_partitions(8u32)
        .build()?;

    let posts = app.topic::<String, String>("posts").build()?;
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
                        word_counts.update(word.word, |n| *n += 1).await?;
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
            }
        })?;

    app.agent::<String, String>("shuffle_words")
        .on(&posts)
        .help("Split posts into words and send each to count_words.")
        .build(move |mut posts| {
            let count_words = count_words.clone();
            async move {
                while let Some(post) = posts.next().await {
                    for word in post.split_whitespace() {
                        count_words
                            .send(
                                word.to_string(),
                                Word {
                                    word: word.to_string(),
                                },
                            )
                            .await?;
                    }
                }
                Ok(())
            }
        })?;

    if app.settings().broker.starts_with("memory://") {
        // Nothing else feeds a private in-memory broker: post a few sample posts.
        let next = Arc::new(AtomicU64::new(0));
        app.timer(
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

    app.timer("report", Duration::from_secs(3), move |_app| {
        let word_counts = word_counts.clone();
        let counted = counted.clone();
        async move {
            let distinct = word_counts.len().await?;
            let top = word_counts.get(&"the".to_string()).await?.unwrap_or(0);
            tracing::info!(
                words = counted.load(Ordering::Relaxed),
                distinct,
                the = top,
                "word count progress"
            );
            Ok(())
        }
    });
    Ok(app)
}

fn main() -> ExitCode {
    match build() {
        Ok(app) => app.main(),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
