//! Faust's "Tables and Windowing" guide, section *Windowing*: page views
//! counted per minute in a tumbling window that expires after an hour,
//! read relative to the event (`current()`), the wall clock (`now()`) and
//! half an hour earlier (`delta(30 min)`), with a callback that gets each
//! window's final count when it closes.
//!
//! ```python
//! views = app.Table('views', default=int).tumbling(
//!     timedelta(minutes=1),
//!     expires=timedelta(hours=1),
//! )
//!
//! @app.agent(page_view_topic)
//! async def print_windowed_events(stream):
//!     async for event in stream:
//!         views[event.page] += 1
//!         print(views[event.page].now())
//!         print(views[event.page].current())
//!         print(views[event.page].delta(timedelta(minutes=30)))
//! ```
//!
//! ```text
//! cargo run --example windowed_views -- worker -l info
//! ```
//!
//! On `memory://` (the default) a timer feeds a page view a second (see
//! [`feed_samples`]).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::prelude::*;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// `class PageView(faust.Record): page: str; user: str`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageView {
    /// The page viewed.
    pub page: String,
    /// Who viewed it.
    pub user: String,
}

/// What the agent printed for one view: `now()`, `current()`, `delta(30 min)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Printed {
    /// The page.
    pub page: String,
    /// Views in the window of the wall clock.
    pub now: u64,
    /// Views in the window of the event's timestamp.
    pub current: u64,
    /// Views in the window 30 minutes before the event.
    pub delta_30min: u64,
}

/// The example app and what it defines.
#[derive(Debug)]
pub struct WindowedViews {
    /// The app (`app.main()` runs it).
    pub app: App,
    /// `app.topic('page_views', value_type=PageView)`, keyed by page.
    pub page_views: Topic<String, PageView>,
    /// Views per page and minute.
    pub views: WindowedTable<String, u64>,
    /// What `print_windowed_events` printed, in order.
    pub printed: Arc<Mutex<Vec<Printed>>>,
    /// Windows closed so far: page, window, final count.
    pub closed: Arc<Mutex<Vec<(String, WindowRange, u64)>>>,
}

/// Define the topic, the windowed table and the agent on `app`.
pub fn build(app: App) -> faustus::Result<WindowedViews> {
    let page_views = app.topic::<String, PageView>("page_views").build()?;
    let closed = Arc::new(Mutex::new(Vec::new()));
    let views = app
        .table::<String, u64>("views")
        .with_default()
        .tumbling(Duration::from_secs(60), Duration::from_secs(3600))
        .on_window_close({
            let closed = closed.clone();
            move |page: &String, window, count: &u64| {
                println!("{page}: {count} views in {window}");
                closed.lock().push((page.clone(), window, *count));
            }
        })
        .build()?;
    let printed = Arc::new(Mutex::new(Vec::new()));
    app.agent::<String, PageView>("print_windowed_events")
        .on(&page_views)
        .help("Count views per page and minute; print now, current and 30 minutes ago.")
        .build({
            let (views, printed) = (views.clone(), printed.clone());
            move |mut stream| {
                let (views, printed) = (views.clone(), printed.clone());
                async move {
                    while let Some(event) = stream.next().await {
                        views.update(&event.page, |n| *n += 1).await?;
                        let w = views.get(&event.page);
                        let p = Printed {
                            page: event.page.clone(),
                            now: w.now().await?.unwrap_or(0),
                            current: w.current().await?.unwrap_or(0),
                            delta_30min: w.delta(Duration::from_secs(30 * 60)).await?.unwrap_or(0),
                        };
                        println!(
                            "{}: now {} current {} 30 min ago {}",
                            p.page, p.now, p.current, p.delta_30min
                        );
                        printed.lock().push(p);
                    }
                    Ok(())
                }
            }
        })?;
    Ok(WindowedViews {
        app,
        page_views,
        views,
        printed,
        closed,
    })
}

// ---------------------------------------------------------------------------
// Sample data: on `memory://` nothing else feeds the topic.

/// Every second, a view of one of three pages.
pub fn feed_samples(example: &WindowedViews) {
    let topic = example.page_views.clone();
    let next = Arc::new(AtomicU64::new(0));
    example
        .app
        .timer("feed_samples", Duration::from_secs(1), move |_app| {
            let topic = topic.clone();
            let i = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let page = format!("page-{}", i % 3);
                let view = PageView {
                    page: page.clone(),
                    user: format!("user-{i}"),
                };
                topic.send(page, view).await?;
                Ok(())
            }
        });
}

impl AsRef<App> for WindowedViews {
    fn as_ref(&self) -> &App {
        &self.app
    }
}

fn main() -> ExitCode {
    faustus::main_defined(
        faustus::app("windowed-views-example")
            .broker("memory://")
            .store("memory://"),
        build,
        feed_samples,
    )
}
