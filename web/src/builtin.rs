//! The built-in endpoints' answers: `/stats` (and `/` as JSON), the
//! dashboard, `/router/`, `/table/{name}/{key}`, `/health`, `/ready` and
//! `/metrics`. They read the app through its public read API only.

use faustus_core::monitor::Figure;
use faustus_core::web::{self, Request, WebError, WebResult};
use faustus_core::App;
use serde_json::json;

use crate::lag::LagSampler;
use crate::{dashboard, metrics};

/// Answer the built-in endpoint `pattern` (one of [`crate::BUILTIN_PATHS`]).
pub(crate) async fn answer(
    app: &App,
    lag: &std::sync::Arc<LagSampler>,
    pattern: &str,
    req: Request,
) -> WebResult {
    match pattern {
        "/" => {
            let wants_html = req
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/html"));
            if wants_html {
                Ok(web::html(dashboard::page(app.id())))
            } else {
                lag.sample(app);
                Ok(web::json(&stats(app).await))
            }
        }
        "/stats" => {
            lag.sample(app);
            Ok(web::json(&stats(app).await))
        }
        "/router" => Ok(web::json(&router(app))),
        "/health" => Ok(web::text("ok\n")),
        "/ready" => {
            if app.is_ready() {
                Ok(web::text("ready\n"))
            } else {
                Err(WebError::unavailable(
                    format!("not ready: {}", app.not_ready_reasons().join("; ")),
                    1,
                ))
            }
        }
        "/metrics" => {
            lag.sample(app);
            let mut r = web::text(metrics::render(app).await);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            Ok(r)
        }
        _ => table_value(app, req.param("name")?, req.param("key")?).await,
    }
}

/// `/table/{name}/{key}`: 404 naming the table when there is none, naming
/// the key when this worker has no value for it.
async fn table_value(app: &App, name: &str, key: &str) -> WebResult {
    if !app.tables().iter().any(|t| t.name == name) {
        return Err(WebError::not_found(format!("no table named {name:?}")));
    }
    match app.table_lookup(name, key).await? {
        Some(v) => Ok(web::json(&v)),
        None => Err(WebError::not_found(format!(
            "key {key:?} is not in table {name:?} on this worker"
        ))),
    }
}

/// The JSON behind `/` and `/stats`.
pub(crate) async fn stats(app: &App) -> serde_json::Value {
    let snap = app.monitor().snapshot();
    let figures = app.monitor().figures();
    let by = |name: &str| -> serde_json::Map<String, serde_json::Value> {
        figures
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, labels, f)| {
                let v = match f {
                    Figure::Counter(c) => json!(c),
                    Figure::Gauge(g) => json!(g),
                    Figure::Timing { count, sum, max } => {
                        json!({"count": count, "sum_seconds": sum, "max_seconds": max})
                    }
                    _ => json!(null),
                };
                (labels.replace('"', ""), v)
            })
            .collect()
    };
    let mut table_rows = Vec::new();
    for t in app.tables() {
        table_rows.push(json!({
            "name": t.name,
            "changelog": t.changelog,
            "keys_here": app.table_local_len(&t.name).await.ok(),
        }));
    }
    json!({
        "app": app.id(),
        "ready": app.is_ready(),
        "leader": app.is_leader(),
        "agents": app.agents().into_iter().map(|a| json!({"name": a.name, "topic": a.topic})).collect::<Vec<_>>(),
        "assigned": app.assignment().iter().map(|tp| tp.to_string()).collect::<Vec<_>>(),
        "tables": table_rows,
        "counters": {
            "messages_received": snap.messages_received,
            "events_acked": snap.events_acked,
            "messages_sent": snap.messages_sent,
            "decode_errors": snap.decode_errors,
            "agent_errors": snap.agent_errors,
            "commits": snap.commits,
            "rebalances": snap.rebalances,
            "recovered_records": snap.recovered_records,
            "dead_letters": snap.dead_letters,
        },
        "recovery": app.monitor().recovery_progress().iter().map(|r| json!({
            "table": r.table,
            "partitions": r.partitions,
            "state": format!("{:?}", r.state).to_lowercase(),
            "done": r.done,
            "total": r.total,
            "remaining": r.remaining,
            "rate": r.rate,
            "eta_seconds": r.eta.map(|d| d.as_secs_f64()),
        })).collect::<Vec<_>>(),
        "received_by_topic": by("faustus_messages_received_total"),
        "sent_by_topic": by("faustus_messages_sent_total"),
        "lag": by("faustus_consumer_lag"),
        "committed": by("faustus_committed_offset"),
    })
}

/// `/router/`: the cluster map (which worker holds which partitions, and
/// where to reach it).
pub(crate) fn router(app: &App) -> serde_json::Value {
    let map = app.cluster_map();
    json!({
        "this_worker": app.worker_id(),
        "workers": map.workers().iter().map(|w| json!({
            "id": w.id,
            "url": w.url,
            "assigned": w.assigned.iter().map(|tp| tp.to_string()).collect::<Vec<_>>(),
            "tables": w.tables,
            "standbys": w.standbys,
        })).collect::<Vec<_>>(),
    })
}
