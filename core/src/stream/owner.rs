//! The agent run a stream belongs to, as the stream sees it: the agent's
//! failure policy (`on_error`, dead letters) that also settles failures of
//! the stream's operators (forwarding, echo), the event the run holds in
//! hand for its supervisor, and the reply address of the event in hand
//! (yielding agents). The agent's builder and supervisor (`agent/`) build on
//! this; the stream knows no more of its agent.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;

use crate::app::topic::{SendOptions, TopicDef};
use crate::app::AppInner;
use crate::drivers::codec::CodecChain;
use crate::drivers::transport::{Message, Record};
use crate::error::{Coordinates, Error, Field, Result};
use crate::flow::acks::AckToken;
use crate::flow::queue::Delivered;
use crate::flow::queue::StreamQueue;
use crate::monitor::AgentFailure;

/// Header naming the topic a reply goes to.
pub const REPLY_TO: &str = "faustus-reply-to";
/// Header carrying the request's correlation id (in the request and its reply).
pub const CORRELATION_ID: &str = "faustus-correlation-id";

/// Where the reply to one event goes.
#[derive(Debug, Clone)]
pub(crate) struct ReplyTarget {
    topic: String,
    correlation_id: Bytes,
}

/// When a reply was made, for its timestamp.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn header<'m>(msg: &'m Message, name: &str) -> Option<&'m Bytes> {
    msg.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

impl ReplyTarget {
    /// The reply address of a request message, if it is one.
    pub(crate) fn of(msg: &Message) -> Option<ReplyTarget> {
        let topic = std::str::from_utf8(header(msg, REPLY_TO)?)
            .ok()?
            .to_string();
        let correlation_id = header(msg, CORRELATION_ID)?.clone();
        Some(ReplyTarget {
            topic,
            correlation_id,
        })
    }

    /// Send `value` as the reply. Returns once the producer accepted it: the
    /// commit of the request waits for its delivery (a failed one holds it;
    /// see `delivery`).
    pub(crate) async fn send<R: Serialize + 'static>(
        &self,
        app: &AppInner,
        codec: &CodecChain,
        value: &R,
    ) -> Result<()> {
        let bytes = codec.encode(value).map_err(|message| Error::Encode {
            field: Field::Value,
            topic: self.topic.clone(),
            codec: codec.name().to_string(),
            message,
        })?;
        let producer = app.producer().await?;
        let record = Record {
            topic: self.topic.as_str().into(),
            partition: None,
            key: Some(self.correlation_id.clone()),
            value: Some(bytes),
            headers: vec![(CORRELATION_ID.to_string(), self.correlation_id.clone())],
            timestamp_ms: Some(now_ms()),
            acks: None,
        };
        let topic = record.topic.clone();
        let delivery = producer.send(record).await?;
        // Not awaited: the commit of the request settles it.
        drop(app.deliveries.track(&app.monitor, delivery, &topic, None)?);
        app.monitor.add_messages_sent(1);
        Ok(())
    }
}

pub(crate) type OnErrorFn = Arc<dyn Fn(&AgentError) -> OnError + Send + Sync>;

/// What to do with an event an agent failed on (see [`AgentBuilder::on_error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Give up on the event: write it to the dead-letter topic when the agent
    /// has one, acknowledge it, restart the agent on the next event.
    Skip,
    /// Process the event again (the restarted agent gets it first).
    Retry,
    /// Stop the agent: the event is given back unprocessed (not committed)
    /// and the agent's events are no longer processed on this worker.
    Stop,
}

/// An agent's failure on one event, as the [`on_error`](AgentBuilder::on_error) hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentError {
    /// Agent name.
    pub agent: String,
    /// What failed: the error or panic message.
    pub error: String,
    /// Where the event came from (`None` for channel events, or no event).
    pub at: Option<Coordinates>,
    /// Whether it was a panic.
    pub panicked: bool,
    /// How many times in a row this event failed (1 the first time).
    pub attempts: u32,
}

/// Headers of a dead-lettered message (besides the original headers).
pub mod dead_letter_headers {
    /// The error message.
    pub const ERROR: &str = "faustus-error";
    /// Topic the event was read from.
    pub const TOPIC: &str = "faustus-source-topic";
    /// Its partition (decimal).
    pub const PARTITION: &str = "faustus-source-partition";
    /// Its offset (decimal).
    pub const OFFSET: &str = "faustus-source-offset";
    /// The agent that failed on it.
    pub const AGENT: &str = "faustus-agent";
}

/// How a failure was handled.
pub(crate) enum Handled {
    /// Acked (after dead-lettering when configured), or given back when that failed.
    Done,
    /// Process again: here is its claim back.
    Retry(AckToken),
    /// The agent stops (the event was given back).
    Stop,
}

/// What every run of one agent shares.
pub(crate) struct AgentCtx {
    pub(crate) name: Arc<str>,
    /// The agent's `faustus_agent_events_total` counter.
    pub(crate) events: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) concurrency: usize,
    pub(crate) on_error: Option<OnErrorFn>,
    pub(crate) dead_letter: Option<Arc<TopicDef>>,
    /// The agent yields values: remember each event's reply address.
    pub(crate) replies: bool,
    /// Streams derived inside the agent (`through`, `group_by`) keep their
    /// buffer across restarts of the agent: one per topic.
    pub(crate) derived: Mutex<HashMap<Arc<str>, Arc<StreamQueue<Delivered>>>>,
    /// `isolated_partitions`: the buffer of each partition's instance.
    pub(crate) partitions: Mutex<HashMap<u32, Arc<StreamQueue<Delivered>>>>,
}

impl AgentCtx {
    pub(crate) fn keeps_failed(&self) -> bool {
        self.on_error.is_some() || self.dead_letter.is_some()
    }

    /// The agent's buffer on a derived topic, created on first use.
    pub(crate) fn derived_queue(
        &self,
        app: &AppInner,
        topic: &TopicDef,
    ) -> Arc<StreamQueue<Delivered>> {
        let mut d = self.derived.lock();
        if let Some(q) = d.get(&topic.name) {
            return q.clone();
        }
        let q = app.subscribe(topic);
        d.insert(topic.name.clone(), q.clone());
        q
    }

    /// The buffer of partition `p`'s instance (`isolated_partitions`).
    pub(crate) fn partition_queue(&self, app: &AppInner, p: u32) -> Arc<StreamQueue<Delivered>> {
        self.partitions
            .lock()
            .entry(p)
            .or_insert_with(|| {
                StreamQueue::new(app.settings().stream_buffer_maxsize, app.space.clone())
            })
            .clone()
    }

    pub(crate) fn derived_queues(&self) -> Vec<Arc<StreamQueue<Delivered>>> {
        let mut v: Vec<_> = self.derived.lock().values().cloned().collect();
        v.extend(self.partitions.lock().values().cloned());
        v
    }

    /// Report a failure on an event and apply the agent's policy to it.
    pub(crate) async fn handle(
        &self,
        app: &AppInner,
        error: AgentError,
        msg: Option<&Message>,
        token: AckToken,
    ) -> Handled {
        handle_failure(Some(self), app, error, msg, token).await
    }
}

/// Report a failure on an event (log with coordinates, monitor) and apply the
/// policy of `ctx` (none: skip) to it.
pub(crate) async fn handle_failure(
    ctx: Option<&AgentCtx>,
    app: &AppInner,
    error: AgentError,
    msg: Option<&Message>,
    token: AckToken,
) -> Handled {
    let at = error
        .at
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "(no topic event)".into());
    app.monitor.record_failure(AgentFailure {
        agent: error.agent.clone(),
        event: at.clone(),
        message: error.error.clone(),
        panicked: error.panicked,
    });
    let decision = ctx
        .and_then(|c| c.on_error.as_ref())
        .map(|f| f(&error))
        .unwrap_or(OnError::Skip);
    tracing::error!(agent = %error.agent, event = %at, error = %error.error, panicked = error.panicked,
        attempts = error.attempts, ?decision, "agent failed on an event");
    match decision {
        OnError::Retry => Handled::Retry(token),
        OnError::Stop => {
            token.release();
            Handled::Stop
        }
        OnError::Skip => {
            let dlq = ctx.and_then(|c| c.dead_letter.as_ref());
            match (dlq, msg) {
                (Some(dlq), Some(msg)) => match dead_letter(app, dlq, &error, msg).await {
                    Ok(()) => token.ack(),
                    Err(e) => {
                        tracing::error!(agent = %error.agent, event = %at, topic = %dlq.name, error = %e,
                            "cannot write the event to the dead-letter topic; it is not acknowledged (it will be processed again after a restart or rebalance)");
                        token.release();
                    }
                },
                _ => token.ack(),
            }
            Handled::Done
        }
    }
}

async fn dead_letter(
    app: &AppInner,
    dlq: &TopicDef,
    error: &AgentError,
    msg: &Message,
) -> Result<()> {
    use dead_letter_headers as h;
    let mut options = SendOptions::new();
    options.headers = msg.headers.clone();
    options.timestamp_ms = msg.timestamp_ms;
    let options = options
        .header(h::ERROR, error.error.clone())
        .header(h::TOPIC, msg.topic.to_string())
        .header(h::PARTITION, msg.partition.to_string())
        .header(h::OFFSET, msg.offset.to_string())
        .header(h::AGENT, error.agent.clone());
    dlq.send_raw(app, msg.key.clone(), msg.value.clone(), options)
        .await?
        .await?;
    app.monitor.add_dead_letters(1);
    Ok(())
}

/// The claim on an event in hand: its own token, or the ack shared with an
/// [`Event`](crate::Event) the agent iterates (`events()` mode).
pub(crate) enum Claim {
    Token(AckToken),
    Shared(Arc<crate::flow::event::SharedAck>),
}

impl Claim {
    /// The token, unless the event was already acked by hand.
    fn take(self) -> Option<AckToken> {
        match self {
            Claim::Token(t) => Some(t),
            Claim::Shared(s) => s.take(),
        }
    }
}

/// The event a run of an agent that decides on failures (`on_error`, dead
/// letters) has taken into processing. Its stream hands it to the run when
/// it takes the event and takes it back, acked, when it advances; when the
/// run ends, the supervisor settles what is still held (ack, dead-letter,
/// retry or give back). Dropped unsettled (a run aborted with the worker), it
/// acks, as a stream does with the event in hand.
pub(crate) struct HeldEvent(Option<HeldParts>);

/// A held event's message, claim, and the buffer it came from (a retry puts
/// it back at the front).
type HeldParts = (Message, Claim, Option<Arc<StreamQueue<Delivered>>>);

/// A held event to settle: its message, its token, the buffer it came from.
pub(crate) type Settled = (Message, AckToken, Option<Arc<StreamQueue<Delivered>>>);

impl HeldEvent {
    pub(crate) fn new(
        msg: Message,
        claim: Claim,
        queue: Option<Arc<StreamQueue<Delivered>>>,
    ) -> Self {
        HeldEvent(Some((msg, claim, queue)))
    }

    /// Ack it now (its stream advanced past it). False if it was acked by hand.
    pub(crate) fn ack(mut self) -> bool {
        match self.0.take().and_then(|(_, claim, _)| claim.take()) {
            Some(t) => {
                t.ack();
                true
            }
            None => false,
        }
    }

    /// Give it back unprocessed: to the front of its buffer (the next run
    /// takes it first), or released when it has none.
    pub(crate) fn give_back(mut self) {
        if let Some((msg, claim, queue)) = self.0.take() {
            if let Some(token) = claim.take() {
                match queue {
                    Some(q) => q.requeue_front(Delivered { msg, token }),
                    None => token.release(),
                }
            }
        }
    }

    /// Message, token and buffer, for the supervisor to settle; `None` when
    /// the event was already acked by hand.
    pub(crate) fn settle(mut self) -> Option<Settled> {
        let (msg, claim, queue) = self.0.take()?;
        Some((msg, claim.take()?, queue))
    }
}

impl Drop for HeldEvent {
    fn drop(&mut self) {
        if let Some(t) = self.0.take().and_then(|(_, claim, _)| claim.take()) {
            t.ack();
        }
    }
}

/// The state of one run of an agent, shared with the stream it iterates.
#[derive(Default)]
pub(crate) struct RunState {
    /// The event in hand of an agent that decides on failures.
    held: Mutex<Option<HeldEvent>>,
    /// Where the reply to the event in hand goes (yielding agents).
    pub(crate) reply: Mutex<Option<ReplyTarget>>,
}

impl RunState {
    /// Take what the run holds (to settle it, or hand it to another run).
    pub(crate) fn take_held(&self) -> Option<HeldEvent> {
        self.held.lock().take()
    }

    /// Hold `event` for this run (replacing nothing: the stream took back
    /// the previous one when it advanced).
    pub(crate) fn hold(&self, event: HeldEvent) {
        *self.held.lock() = Some(event);
    }
}

/// Ties a stream to the agent run iterating it.
#[derive(Clone)]
pub(crate) struct AgentLink {
    pub(crate) ctx: Arc<AgentCtx>,
    pub(crate) run: Arc<RunState>,
}

impl AgentLink {
    /// The stream took `msg` into processing.
    pub(crate) fn on_event(&self, msg: Option<&Message>) {
        if self.ctx.replies {
            *self.run.reply.lock() = msg.and_then(ReplyTarget::of);
        }
    }

    /// Whether the run holds each event in hand for the supervisor to settle
    /// on a failure (the agent has `on_error` or a dead-letter topic).
    pub(crate) fn holds_events(&self) -> bool {
        self.ctx.keeps_failed()
    }

    /// A link to a new run state of the same agent (an isolated partition's instance).
    pub(crate) fn fresh_run(&self) -> AgentLink {
        AgentLink {
            ctx: self.ctx.clone(),
            run: Arc::new(RunState::default()),
        }
    }
}
