//! The bounded cache against a model: random updates, sets and deletes with
//! commits in between, on a table caching only a few keys (so entries are
//! evicted and read back, and the key filter decides which misses need the
//! store), in both changelog modes. After every run the table, the fold of
//! its changelog and a copy recovered by another worker equal the model.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use faustus::prelude::*;
use faustus::TopicPartition;
use proptest::prelude::*;
use support::*;

/// What an event does to its key.
#[derive(Debug, Clone, Copy)]
enum Op {
    Add(u64),
    Set(u64),
    Delete,
    /// Not an event: wait for a commit.
    Commit,
}

fn op() -> impl Strategy<Value = (u8, Op)> {
    (
        0u8..24,
        prop_oneof![
            4 => (1u64..5).prop_map(Op::Add),
            2 => (0u64..100).prop_map(Op::Set),
            1 => Just(Op::Delete),
            1 => Just(Op::Commit),
        ],
    )
}

type ModelApp = (
    App,
    Topic<String, (u8, u64)>,
    Table<String, u64>,
    std::path::PathBuf,
);

/// `ops` (key → (kind, n)) → `values` table caching 4 keys, in redb in a
/// new directory (returned).
fn model_app(broker_name: &str, per_write: bool) -> ModelApp {
    let dir = std::env::temp_dir().join(unique("model-redb"));
    let app = app_on(broker_name, "model")
        .topic_partitions(2u32)
        .store(format!("redb://{}", dir.display()))
        .build()
        .unwrap();
    let ops = app.topic::<String, (u8, u64)>("ops").build().unwrap();
    let mut values = app
        .table::<String, u64>("values")
        .with_default()
        .cache_capacity(4);
    if per_write {
        values = values.changelog_per_write();
    }
    let values = values.build().unwrap();
    app.agent::<String, (u8, u64)>("apply")
        .on(&ops)
        .build({
            let values = values.clone();
            move |s| {
                let values = values.clone();
                async move {
                    let mut items = s.items();
                    while let Some((key, (kind, n))) = items.next().await {
                        let key = key.unwrap_or_default();
                        match kind {
                            0 => {
                                values.update(&key, |v| *v += n).await?;
                            }
                            1 => values.set(key, n).await?,
                            _ => values.delete(&key).await?,
                        }
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    (app, ops, values, dir)
}

fn fold_changelog(broker_name: &str, changelog: &str) -> BTreeMap<String, u64> {
    let b = broker(broker_name);
    let mut out = BTreeMap::new();
    for p in 0..2 {
        for m in b.messages(changelog, p) {
            let k: String = serde_json::from_slice(m.key.as_deref().unwrap()).unwrap();
            match m.value.as_deref() {
                Some(v) => {
                    out.insert(k, serde_json::from_slice(v).unwrap());
                }
                None => {
                    out.remove(&k);
                }
            }
        }
    }
    out
}

async fn run(ops: Vec<(u8, Op)>, per_write: bool) {
    let name = unique("model");
    let (app, topic, values, dir) = model_app(&name, per_write);
    let w = start(&app).await;
    let mut model: BTreeMap<String, u64> = BTreeMap::new();
    let mut last = BTreeMap::new();
    for (k, op) in ops {
        let key = format!("key-{k}");
        let (kind, n) = match op {
            Op::Add(n) => {
                *model.entry(key.clone()).or_default() += n;
                (0, n)
            }
            Op::Set(n) => {
                model.insert(key.clone(), n);
                (1, n)
            }
            Op::Delete => {
                model.remove(&key);
                (2, 0)
            }
            Op::Commit => {
                for (p, o) in &last {
                    app.processed(&TopicPartition::new("ops", *p), *o).await;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
                continue;
            }
        };
        let md = topic.send(key, (kind, n)).await.unwrap().await.unwrap();
        last.insert(md.partition, md.offset);
    }
    for (p, o) in &last {
        app.processed(&TopicPartition::new("ops", *p), *o).await;
    }
    for k in 0..24u8 {
        let key = format!("key-{k}");
        assert_eq!(
            values.get(&key).await.unwrap(),
            model.get(&key).copied(),
            "{key}"
        );
    }
    let items: BTreeMap<String, u64> = values.items().await.unwrap().into_iter().collect();
    assert_eq!(items, model);
    let changelog = values.changelog_topic().to_string();
    eventually("the changelog to fold to the model", || {
        fold_changelog(&name, &changelog) == model
    })
    .await;
    w.stop().await.unwrap();
    // Another worker with an empty store recovers the same table.
    let (app2, _t, values2, dir2) = model_app(&name, per_write);
    let w2 = start(&app2).await;
    let items: BTreeMap<String, u64> = values2.items().await.unwrap().into_iter().collect();
    assert_eq!(items, model);
    w2.stop().await.unwrap();
    for d in [dir, dir2] {
        std::fs::remove_dir_all(d).ok();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_small_cache_on_redb_agrees_with_the_model(
        ops in prop::collection::vec(op(), 1..80),
        per_write in any::<bool>(),
    ) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(run(ops, per_write));
    }
}
