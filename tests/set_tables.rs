//! Set tables: add/discard/contains/members, a changelog of operations whose
//! fold is the set, recovery by another worker.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use faustus::prelude::*;
use faustus::{SetTable, TopicPartition};
use proptest::prelude::*;
use support::*;

type Model = BTreeMap<String, BTreeSet<String>>;
type Follows = Topic<String, (String, bool)>;

/// `follows`: (member, add?) per user → `followers` set table.
fn followers_app(broker_name: &str) -> (App, Follows, SetTable<String, String>) {
    let app = app_on(broker_name, "sets")
        .topic_partitions(2u32)
        .build()
        .unwrap();
    let follows = app
        .topic::<String, (String, bool)>("follows")
        .build()
        .unwrap();
    let followers = app
        .set_table::<String, String>("followers")
        .build()
        .unwrap();
    app.agent::<String, (String, bool)>("follow")
        .on(&follows)
        .build({
            let followers = followers.clone();
            move |s| {
                let followers = followers.clone();
                async move {
                    let mut items = s.items();
                    while let Some((user, (member, add))) = items.next().await {
                        let user = user.unwrap_or_default();
                        if add {
                            followers.add(&user, member).await?;
                        } else {
                            followers.discard(&user, &member).await?;
                        }
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    (app, follows, followers)
}

/// The changelog folded: last record per (user, member), tombstones remove.
fn fold_changelog(broker_name: &str, changelog: &str) -> Model {
    let b = broker(broker_name);
    let mut last: BTreeMap<(String, String), bool> = BTreeMap::new();
    for p in 0..2 {
        for m in b.messages(changelog, p) {
            let k: (String, String) = serde_json::from_slice(m.key.as_deref().unwrap()).unwrap();
            last.insert(k, m.value.is_some());
        }
    }
    let mut out = Model::new();
    for ((user, member), present) in last {
        if present {
            out.entry(user).or_default().insert(member);
        }
    }
    out
}

async fn run_ops(ops: &[(u8, u8, bool)]) {
    let name = unique("sets");
    let (app, follows, followers) = followers_app(&name);
    let w = start(&app).await;
    let mut model = Model::new();
    let mut last = BTreeMap::new();
    for (u, m, add) in ops {
        let (user, member) = (format!("user-{u}"), format!("member-{m}"));
        let md = follows
            .send(user.clone(), (member.clone(), *add))
            .await
            .unwrap()
            .await
            .unwrap();
        last.insert(md.partition, md.offset);
        let set = model.entry(user).or_default();
        if *add {
            set.insert(member);
        } else {
            set.remove(&member);
        }
    }
    model.retain(|_, s| !s.is_empty());
    for (p, o) in &last {
        app.processed(&TopicPartition::new("follows", *p), *o).await;
    }
    for u in 0..3 {
        let user = format!("user-{u}");
        let expected = model.get(&user).cloned().unwrap_or_default();
        assert_eq!(followers.members(&user).await.unwrap(), expected);
        for m in 0..5 {
            let member = format!("member-{m}");
            assert_eq!(
                followers.contains(&user, &member).await.unwrap(),
                expected.contains(&member)
            );
        }
    }
    let items: Model = followers.items().await.unwrap().into_iter().collect();
    assert_eq!(items, model);
    // After a commit the changelog folds to the sets.
    let changelog = followers.table().changelog_topic().to_string();
    eventually("the changelog to fold to the sets", || {
        fold_changelog(&name, &changelog) == model
    })
    .await;
    w.stop().await.unwrap();

    // Another worker (empty memory store) recovers the same sets.
    let (app2, _f2, followers2) = followers_app(&name);
    let w2 = start(&app2).await;
    let items: Model = followers2.items().await.unwrap().into_iter().collect();
    assert_eq!(items, model);
    w2.stop().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn the_set_table_the_fold_of_its_changelog_and_a_recovered_copy_agree(
        ops in prop::collection::vec((0u8..3, 0u8..5, prop::bool::weighted(0.6)), 1..40)
    ) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(run_ops(&ops));
    }
}

#[tokio::test(start_paused = true)]
async fn add_then_discard_outside_a_stream_uses_the_keys_partition() {
    let name = unique("sets-outside");
    let (app, _follows, followers) = followers_app(&name);
    let w = start(&app).await;
    let alice = "alice".to_string();
    followers.add(&alice, "bob".into()).await.unwrap();
    followers.add(&alice, "carol".into()).await.unwrap();
    followers.discard(&alice, &"bob".into()).await.unwrap();
    followers.discard(&alice, &"nobody".into()).await.unwrap();
    assert_eq!(
        followers.members(&alice).await.unwrap(),
        BTreeSet::from(["carol".to_string()])
    );
    assert!(!followers.contains(&alice, &"bob".into()).await.unwrap());
    w.stop().await.unwrap();
}
