//! `GET /alerts`: the newest alert deliveries (root).

use axum::Json;
use axum::extract::State;
use mirror_common::ErrorBody;
use mirror_common::api::AlertDeliveryView;

use super::error::ApiError;
use super::extract::{QueryMap, RootCaller};
use crate::db;
use crate::state::AppState;

/// `GET /alerts?limit=`: newest first.
#[utoipa::path(
    get,
    path = "/alerts",
    tag = "alerts",
    params(("limit" = Option<u32>, Query, description = "1 to 1000, default 100")),
    responses(
        (status = 200, description = "the newest deliveries, newest first", body = Vec<AlertDeliveryView>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn list_alerts(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
    query: QueryMap,
) -> Result<Json<Vec<AlertDeliveryView>>, ApiError> {
    let limit = u32::try_from(super::extract::limit_param(&query, 100)?).unwrap_or(100);
    let rows = db::alerts::recent(&state.db, limit).await?;
    let views = rows
        .into_iter()
        .map(|r| {
            let text = serde_json::from_str::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|b| b["text"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let state = match (r.delivered_at, r.gave_up_at) {
                (Some(_), _) => "delivered",
                (None, Some(_)) => "given_up",
                (None, None) => "pending",
            };
            AlertDeliveryView {
                id: r.id,
                webhook: r.webhook,
                event: r.event,
                text,
                state: state.into(),
                created_at: r.created_at,
                attempts: u32::try_from(r.attempts).unwrap_or(0),
                next_attempt_at: (state == "pending").then_some(r.next_attempt_at),
                delivered_at: r.delivered_at,
                last_error: r.last_error,
            }
        })
        .collect();
    Ok(Json(views))
}
