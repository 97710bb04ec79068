//! The master's own state: its nodes and its webhook deliveries.

use mirror_common::api::{AlertDeliveryView, NodeView};

use crate::client::{Client, Result};
use crate::render::{paint, print_json, table, time_text};

/// `mirrorctl nodes`.
pub async fn nodes(c: &Client, as_json: bool) -> Result<()> {
    let nodes: Vec<NodeView> = c.get("/nodes").await?;
    if as_json {
        return print_json(&nodes);
    }
    let mut t = table(&["NODE", "STATE", "API", "RSYNCD", "HEARTBEAT", "PROJECTS"]);
    for n in &nodes {
        let state = match (n.leader, n.alive) {
            (true, _) => "leader",
            (false, true) => "alive",
            (false, false) => "dead",
        };
        t.add_row(vec![
            n.name.clone(),
            paint(state),
            n.api_url.clone(),
            n.rsyncd.clone(),
            time_text(Some(n.last_heartbeat)),
            n.projects.len().to_string(),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// `mirrorctl alerts`.
pub async fn alerts(c: &Client, limit: u32, as_json: bool) -> Result<()> {
    let alerts: Vec<AlertDeliveryView> = c.get(&format!("/alerts?limit={limit}")).await?;
    if as_json {
        return print_json(&alerts);
    }
    let mut t = table(&["ID", "WEBHOOK", "EVENT", "STATE", "CREATED", "TRIES", "TEXT"]);
    for a in &alerts {
        let state = match (a.state.as_str(), &a.last_error) {
            ("pending", Some(e)) => format!("pending ({e})"),
            (s, _) => s.to_owned(),
        };
        t.add_row(vec![
            a.id.to_string(),
            a.webhook.clone(),
            a.event.clone(),
            paint(&state),
            time_text(Some(a.created_at)),
            a.attempts.to_string(),
            a.text.clone(),
        ]);
    }
    println!("{t}");
    Ok(())
}
