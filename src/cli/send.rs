//! `send TOPIC|@AGENT [VALUE] --key K --partition P --repeat N`.

use bytes::Bytes;
use clap::{Arg, ArgMatches, Command};

use crate::codec::{CodecChain, Format};
use crate::transport::Record;
use crate::{App, Error, Result, SendOptions};

/// The `send` command's arguments.
pub(super) fn command() -> Command {
    Command::new("send")
        .about("Send a message to a topic, or to an agent with @name")
        .arg(
            Arg::new("entity")
                .required(true)
                .value_name("TOPIC|@AGENT")
                .help("Topic name, or @agent for the agent's topic"),
        )
        .arg(
            Arg::new("value")
                .value_name("VALUE")
                .help("The value: JSON, else taken as a string (none: a message without value)"),
        )
        .arg(
            Arg::new("key")
                .short('k')
                .long("key")
                .help("The key: JSON, else taken as a string"),
        )
        .arg(
            Arg::new("partition")
                .long("partition")
                .value_parser(clap::value_parser!(u32))
                .help("Partition (default: by key)"),
        )
        .arg(
            Arg::new("repeat")
                .short('r')
                .long("repeat")
                .value_parser(clap::value_parser!(u64).range(1..))
                .default_value("1")
                .help("Send the message this many times"),
        )
}

/// Encode command-line text with `codec`: JSON formats take it as JSON when
/// it parses, else as a string; raw formats take the text as is.
fn encode_text(codec: &CodecChain, text: &str, what: &str) -> Result<Bytes> {
    let encoded = match codec.format() {
        Format::Json => {
            let v: serde_json::Value = serde_json::from_str(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.to_string()));
            codec.encode(&v)
        }
        Format::Raw => codec.encode(&text.to_string()),
    };
    encoded.map_err(|m| {
        Error::config(
            what,
            format!("cannot encode {text:?} with codec {}: {m}", codec.name()),
        )
    })
}

/// Send the message (`--repeat` times) to a topic the app declared (with its
/// codecs, creating it first) or to any other topic (with the app's default
/// codecs); print one JSON line of metadata per message.
pub(super) async fn send(app: &App, m: &ArgMatches) -> Result<()> {
    let entity = m.get_one::<String>("entity").cloned().unwrap_or_default();
    let topic = match entity.strip_prefix('@') {
        Some(agent) => app
            .agents()
            .into_iter()
            .find(|a| a.name.trim_start_matches('@') == agent)
            .map(|a| a.topic)
            .ok_or_else(|| Error::NotFound {
                what: "agent",
                name: format!(
                    "@{agent} (agents: {})",
                    app.agents()
                        .into_iter()
                        .map(|a| a.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?,
        None => entity,
    };
    let declared = app.declared_topic::<serde_json::Value, serde_json::Value>(&topic);
    let (key_codec, value_codec) = match &declared {
        Some(t) => (
            app.registry().codec(t.key_serializer())?,
            app.registry().codec(t.value_serializer())?,
        ),
        None => (
            app.registry().codec(&app.settings().key_serializer)?,
            app.registry().codec(&app.settings().value_serializer)?,
        ),
    };
    let key = m
        .get_one::<String>("key")
        .map(|k| encode_text(&key_codec, k, "--key"))
        .transpose()?;
    let value = m
        .get_one::<String>("value")
        .map(|v| encode_text(&value_codec, v, "value"))
        .transpose()?;
    let partition = m.get_one::<u32>("partition").copied();
    let repeat = m.get_one::<u64>("repeat").copied().unwrap_or(1);
    let producer = app.producer().await?;
    for _ in 0..repeat {
        let delivery = match &declared {
            Some(t) => {
                let mut options = SendOptions::new();
                options.partition = partition;
                t.send_bytes(key.clone(), value.clone(), options).await?
            }
            None => {
                let mut record = Record::new(topic.clone(), key.clone(), value.clone());
                record.partition = partition;
                producer.send(record).await?
            }
        };
        let meta = delivery.await?;
        println!(
            "{}",
            serde_json::json!({"topic": topic, "partition": meta.partition, "offset": meta.offset})
        );
    }
    producer.flush().await
}
