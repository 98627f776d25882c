//! The dashboard: one HTML page (`GET /` with `Accept: text/html`) that
//! polls `/stats` every second and shows counters, agents, partitions, lag,
//! tables and recovery.

/// The dashboard page for the app `app_id` (HTML-escaped into the title and
/// heading).
pub(crate) fn page(app_id: &str) -> String {
    DASHBOARD.replace("{{app}}", &html_escape(app_id))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const DASHBOARD: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{{app}} · Faustus</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
.num{text-align:right;font-variant-numeric:tabular-nums}
</style></head>
<body>
<h1>{{app}}</h1>
<p>Status: <b id="status">loading…</b> · leader: <b id="leader">?</b> · updated <span id="updated">never</span></p>
<h2>Events</h2>
<table>
<tr><th>received</th><td class="num" id="messages_received">–</td><th>rate /s</th><td class="num" id="rate">–</td></tr>
<tr><th>acked</th><td class="num" id="events_acked">–</td><th>sent</th><td class="num" id="messages_sent">–</td></tr>
<tr><th>commits</th><td class="num" id="commits">–</td><th>rebalances</th><td class="num" id="rebalances">–</td></tr>
<tr><th>decode errors</th><td class="num" id="decode_errors">–</td><th>agent errors</th><td class="num" id="agent_errors">–</td></tr>
<tr><th>recovered records</th><td class="num" id="recovered_records">–</td><th>dead letters</th><td class="num" id="dead_letters">–</td></tr>
</table>
<h2>Agents</h2><table id="agents"></table>
<h2>Assigned partitions</h2><p id="assigned">–</p>
<h2>Lag</h2><table id="lag"></table>
<h2>Tables</h2><table id="tables"></table>
<h2>Recovery</h2><table id="recovery"></table>
<script>
let last = null;
function rows(id, list) {
  const t = document.getElementById(id);
  t.innerHTML = '';
  for (const cells of list) {
    const tr = document.createElement('tr');
    for (const c of cells) { const td = document.createElement('td'); td.textContent = String(c); tr.appendChild(td); }
    t.appendChild(tr);
  }
}
async function refresh() {
  try {
    const r = await fetch('/stats', {headers: {'Accept': 'application/json'}});
    const s = await r.json();
    document.getElementById('status').textContent = s.ready ? 'ready' : 'starting';
    document.getElementById('leader').textContent = s.leader ? 'yes' : 'no';
    for (const [k, v] of Object.entries(s.counters)) {
      const el = document.getElementById(k);
      if (el) el.textContent = String(v);
    }
    const now = Date.now();
    if (last) {
      const dt = (now - last.at) / 1000;
      const rate = dt > 0 ? (s.counters.messages_received - last.received) / dt : 0;
      document.getElementById('rate').textContent = rate.toFixed(1);
    }
    last = {at: now, received: s.counters.messages_received};
    rows('agents', s.agents.map(a => [a.name, a.topic]));
    document.getElementById('assigned').textContent = s.assigned.join(', ') || 'none';
    rows('lag', Object.entries(s.lag));
    rows('tables', s.tables.map(t => [t.name, t.changelog, t.keys_here ?? '?']));
    rows('recovery', s.recovery.map(r => [r.table, r.state, r.done + ' / ' + r.total,
      r.eta_seconds == null ? '' : 'ETA ' + r.eta_seconds.toFixed(0) + ' s']));
    document.getElementById('updated').textContent = new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById('status').textContent = 'unreachable: ' + e;
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body></html>
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn the_app_id_is_escaped() {
        let page = super::page("a<b>&\"c\"");
        assert!(page.contains("<title>a&lt;b&gt;&amp;&quot;c&quot; · Faustus</title>"));
        assert!(!page.contains("{{app}}"));
    }
}
