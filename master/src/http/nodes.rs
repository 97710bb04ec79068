//! `GET /nodes`: the master nodes on this database, which one leads, and what each runs.

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use mirror_common::ErrorBody;
use mirror_common::api::NodeView;

use super::error::ApiError;
use super::extract::Caller;
use crate::db;
use crate::state::AppState;

/// `GET /nodes`: every node, by name.
#[utoipa::path(
    get,
    path = "/nodes",
    tag = "nodes",
    responses(
        (status = 200, description = "every node, by name", body = Vec<NodeView>),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1), or the database is unavailable", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn list_nodes(State(state): State<AppState>, Caller(_): Caller) -> Result<Json<Vec<NodeView>>, ApiError> {
    let rows = db::nodes::list(&state.db).await?;
    let lease = db::nodes::lease(&state.db).await?;
    let now = Utc::now();
    let leader = lease
        .filter(|l| l.expires_at.as_str() >= mirror_common::time::Timestamp::from(now).to_text().as_str())
        .map(|l| l.node);
    let dead_after = chrono::Duration::seconds(i64::try_from(state.settings.node_dead_secs).unwrap_or(i64::MAX));
    let alive: Vec<String> =
        rows.iter().filter(|n| n.last_heartbeat.to_datetime() + dead_after > now).map(|n| n.name.clone()).collect();
    // Who runs each project: the first alive node of its group; the leader for any node.
    let mut runs: std::collections::HashMap<String, Vec<mirror_common::api::ProjectId>> = Default::default();
    for p in db::projects::list(&state.db).await? {
        let runner = match &p.node {
            None => leader.clone(),
            Some(placement) => placement.runner(&alive).map(|n| n.to_string()),
        };
        if let Some(r) = runner {
            runs.entry(r).or_default().push(p.config.id);
        }
    }
    let views = rows
        .into_iter()
        .map(|n| {
            let leads = leader.as_deref() == Some(n.name.as_str());
            NodeView {
                alive: alive.contains(&n.name),
                leader: leads,
                projects: runs.remove(&n.name).unwrap_or_default(),
                name: n.name,
                api_url: n.api_url,
                rsyncd: n.rsyncd,
                started_at: n.started_at,
                last_heartbeat: n.last_heartbeat,
            }
        })
        .collect();
    Ok(Json(views))
}
