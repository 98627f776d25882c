//! The word-count demo's agents under the test context: no broker, virtual time.

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
