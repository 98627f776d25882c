//! Faust's "Streams" guide, section *Processors*: callbacks applied to every
//! value going through a stream, sync (`add_default_language`) and async
//! (`add_client_info`), in the order they were added
//! (`app.stream(my_topic, processors=[add_default_language, add_client_info])`).
//!
//! In Rust the processors are added to the stream with
//! [`Stream::processor`] and [`Stream::async_processor`]; the value coming out
//! is `add_client_info(add_default_language(value))`. The agent forwards the
//! enriched values to the `enriched-accounts` topic.
//!
//! ```text
//! cargo run --example processors -- worker -l info
//! ```
//!
//! On `memory://` (the default) a timer feeds sample accounts (see
//! [`feed_samples`]).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::prelude::*;
use serde::{Deserialize, Serialize};

/// An account event to enrich (the guide's `MyModel`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MyModel {
    /// The account.
    pub account_id: String,
    /// Language, `US` when missing (set by [`add_default_language`]).
    pub language: Option<String>,
    /// Client info (set by [`add_client_info`]).
    pub client: Option<String>,
}

/// A sync processor: default the language to `US`.
pub fn add_default_language(mut value: MyModel) -> MyModel {
    if value.language.as_deref().unwrap_or("").is_empty() {
        value.language = Some("US".into());
    }
    value
}

/// An async processor: look up the client info for the account's language.
pub async fn add_client_info(mut value: MyModel) -> MyModel {
    let info = get_http_client_info(&value.account_id, value.language.as_deref()).await;
    value.client = Some(info);
    value
}

/// Stands in for an HTTP call to a client-info service.
async fn get_http_client_info(account_id: &str, language: Option<&str>) -> String {
    tokio::time::sleep(Duration::from_millis(20)).await;
    format!("{account_id}@{}", language.unwrap_or("?"))
}

/// The example app and what it defines.
#[derive(Debug)]
pub struct Processors {
    /// The app (`app.main()` runs it).
    pub app: App,
    /// The guide's `my_topic`.
    pub accounts: Topic<String, MyModel>,
    /// Where the enriched values go.
    pub enriched: Topic<String, MyModel>,
}

/// Define the topics and the `enrich` agent on `app`.
pub fn build(app: App) -> faustus::Result<Processors> {
    let accounts = app.topic::<String, MyModel>("accounts").build()?;
    let enriched = app.topic::<String, MyModel>("enriched-accounts").build()?;

    app.agent::<String, MyModel>("enrich")
        .on(&accounts)
        .help("Add default language and client info, forward to enriched-accounts.")
        .build({
            let enriched = enriched.clone();
            move |stream| {
                let enriched = enriched.clone();
                async move {
                    // Applied in order: first the language, then the client info.
                    let mut values = stream
                        .processor(add_default_language)
                        .async_processor(add_client_info);
                    while let Some(value) = values.next().await {
                        println!("enriched: {value:?}");
                        enriched.send(value.account_id.clone(), value).await?;
                    }
                    Ok(())
                }
            }
        })?;

    Ok(Processors {
        app,
        accounts,
        enriched,
    })
}

// ---------------------------------------------------------------------------
// Sample data: on `memory://` nothing else feeds the topic.

/// Every second, send an account event, every other one without a language.
pub fn feed_samples(example: &Processors) {
    let accounts = example.accounts.clone();
    let next = Arc::new(AtomicU64::new(0));
    example
        .app
        .timer("feed_samples", Duration::from_secs(1), move |_app| {
            let accounts = accounts.clone();
            let i = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let account_id = format!("account-{i}");
                let language = (i % 2 == 1).then(|| "DE".to_string());
                accounts
                    .send(
                        account_id.clone(),
                        MyModel {
                            account_id,
                            language,
                            client: None,
                        },
                    )
                    .await?;
                Ok(())
            }
        });
}

impl AsRef<App> for Processors {
    fn as_ref(&self) -> &App {
        &self.app
    }
}

fn main() -> ExitCode {
    faustus::main_defined(
        faustus::app("processors-example")
            .broker("memory://")
            .store("memory://"),
        build,
        feed_samples,
    )
}
