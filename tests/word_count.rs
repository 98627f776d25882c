//! The word-count demo's agents under the test context: no broker, virtual time.

#![allow(clippy::unwrap_used)]

#[path = "../examples/word_count.rs"]
#[allow(dead_code, unreachable_pub)]
mod word_count;

use std::collections::BTreeMap;

use faustus_testkit::TestContext;

#[tokio::test(start_paused = true)]
async fn counts_every_word_of_the_posts() {
    let app = faustus::app("word-counts-test")
        .env(Default::default())
        .broker("memory://")
        .web_enabled(false)
        .build()
        .unwrap();
    let wc = word_count::build(app).unwrap();
    let ctx = TestContext::start(&wc.app).await.unwrap();

    let posts = ["the cat sat on the mat", "The dog sat", "a cat and a dog"];
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (i, post) in posts.iter().enumerate() {
        ctx.put(&wc.posts, format!("post-{i}"), post.to_string())
            .await
            .unwrap();
        for w in post.split_whitespace() {
            *expected.entry(w.to_lowercase()).or_default() += 1;
        }
    }
    // shuffle_words processed the posts; wait for count_words too.
    ctx.settle().await.unwrap();
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in wc.word_counts.items().await.unwrap() {
        counted.insert(k, v);
    }
    assert_eq!(counted, expected);
    assert_eq!(wc.word_counts.get(&"the".into()).await.unwrap(), Some(3));

    // count_words alone: a word sent to the agent directly.
    ctx.send(
        &wc.count_words,
        "zebra".into(),
        word_count::Word {
            word: "zebra".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(wc.word_counts.get(&"zebra".into()).await.unwrap(), Some(1));
    ctx.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_agent_error_fails_the_test_context_call() {
    use faustus::prelude::*;
    let app = faustus::app("ctx-errors")
        .env(Default::default())
        .broker("memory://")
        .web_enabled(false)
        .build()
        .unwrap();
    let agent = app
        .agent::<String, u64>("strict")
        .build(|mut s| async move {
            while let Some(v) = s.next().await {
                if v > 10 {
                    return Err(faustus::Error::other(format!("{v} is too big")));
                }
            }
            Ok(())
        })
        .unwrap();
    let ctx = TestContext::start(&app).await.unwrap();
    ctx.send(&agent, "k".into(), 1).await.unwrap();
    let e = ctx.send(&agent, "k".into(), 11).await.unwrap_err();
    assert!(e.to_string().contains("11 is too big"), "{e}");
    assert!(e.to_string().contains("@1"), "names the event: {e}");
    ctx.send(&agent, "k".into(), 2).await.unwrap();
    ctx.stop().await.unwrap();
}

#[test]
fn the_produce_command_sends_sample_posts() {
    let broker = format!("cli-produce-{}", std::process::id());
    let app = faustus::app("word-counts-cli")
        .env(Default::default())
        .broker(format!("memory://{broker}"))
        .web_enabled(false)
        .build()
        .unwrap();
    let wc = word_count::build(app).unwrap();
    word_count::commands(&wc);
    let args = [
        "word_count",
        "produce",
        "--max-messages",
        "12",
        "--start",
        "3",
    ];
    let code = faustus::cli::run(&wc.app, args.iter().map(std::ffi::OsString::from));
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let b = faustus_transport_memory::MemoryBroker::named(&broker);
    let mut bodies = Vec::new();
    for p in 0..8 {
        for m in b.messages("posts", p) {
            let k: String = serde_json::from_slice(m.key.as_deref().unwrap()).unwrap();
            let v: String = serde_json::from_slice(m.value.as_deref().unwrap()).unwrap();
            bodies.push((k, v));
        }
    }
    bodies.sort();
    assert_eq!(bodies.len(), 12);
    assert!(bodies.contains(&("post-3".into(), word_count::POSTS[3].into())));
    assert!(bodies.contains(&("post-14".into(), word_count::POSTS[14 % 5].into())));

    let bad = ["word_count", "produce", "--max-messages", "many"];
    let code = faustus::cli::run(&wc.app, bad.iter().map(std::ffi::OsString::from));
    assert_eq!(code, std::process::ExitCode::from(faustus::cli::EXIT_USAGE));
}
