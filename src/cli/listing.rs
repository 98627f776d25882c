//! `agents`, `tables`, `topics`: box-drawn listings like Faust's, or JSON.

use std::process::ExitCode;

use crate::App;

/// `agents`: name, topic and help of every agent.
pub(super) fn agents(app: &App, json: bool) -> ExitCode {
    let rows: Vec<Vec<String>> = app
        .agents()
        .into_iter()
        .map(|a| vec![a.name, a.topic, a.help])
        .collect();
    print!(
        "{}",
        listing("Agents", &["name", "topic", "help"], &rows, json)
    );
    ExitCode::SUCCESS
}

/// `tables`: name, changelog topic and help of every table.
pub(super) fn tables(app: &App, json: bool) -> ExitCode {
    let rows: Vec<Vec<String>> = app
        .tables()
        .into_iter()
        .map(|t| vec![t.name, t.changelog, t.help])
        .collect();
    print!(
        "{}",
        listing("Tables", &["name", "changelog", "help"], &rows, json)
    );
    ExitCode::SUCCESS
}

/// `topics`: the names of the topics the app declared.
pub(super) fn topics(app: &App, json: bool) -> ExitCode {
    let rows: Vec<Vec<String>> = app.topics().into_iter().map(|t| vec![t]).collect();
    print!("{}", listing("Topics", &["name"], &rows, json));
    ExitCode::SUCCESS
}

/// A box-drawn table like Faust's `agents` output, or JSON rows.
pub fn listing(title: &str, headers: &[&str], rows: &[Vec<String>], json: bool) -> String {
    if json {
        let objs: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::Value::Object(
                    headers
                        .iter()
                        .zip(r)
                        .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.clone())))
                        .collect(),
                )
            })
            .collect();
        return format!("{}\n", serde_json::Value::Array(objs));
    }
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(c));
            }
        }
    }
    if let Some(w) = widths.first_mut() {
        *w = (*w).max(width(title));
    }
    let line = |l: &str, m: &str, r: &str, first: Option<&str>| {
        let mut s = String::from(l);
        for (i, w) in widths.iter().enumerate() {
            if i > 0 {
                s.push_str(m);
            }
            let fill = match (i, first) {
                (0, Some(t)) => format!("{t}{}", "─".repeat(w + 2 - width(t))),
                _ => "─".repeat(w + 2),
            };
            s.push_str(&fill);
        }
        s.push_str(r);
        s.push('\n');
        s
    };
    let row = |cells: &[String]| {
        let mut s = String::from("│");
        for (i, w) in widths.iter().enumerate() {
            let c = cells.get(i).map(String::as_str).unwrap_or("");
            s.push_str(&format!(" {c}{} │", " ".repeat(w - width(c))));
        }
        s.push('\n');
        s
    };
    let mut out = line("┌", "┬", "┐", Some(title));
    out.push_str(&row(&headers
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()));
    out.push_str(&line("├", "┼", "┤", None));
    for r in rows {
        out.push_str(&row(r));
    }
    out.push_str(&line("└", "┴", "┘", None));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_looks_like_faust() {
        let out = listing(
            "Agents",
            &["name", "topic", "help"],
            &[vec![
                "@myagent".into(),
                "stream-example-myagent".into(),
                "Example agent.".into(),
            ]],
            false,
        );
        let expected = "\
┌Agents────┬────────────────────────┬────────────────┐
│ name     │ topic                  │ help           │
├──────────┼────────────────────────┼────────────────┤
│ @myagent │ stream-example-myagent │ Example agent. │
└──────────┴────────────────────────┴────────────────┘
";
        assert_eq!(out, expected);
    }

    #[test]
    fn json_listing() {
        let out = listing("T", &["name"], &[vec!["a".into()]], true);
        assert_eq!(out.trim(), r#"[{"name":"a"}]"#);
    }
}
