//! `GET /openapi.json` (OpenAPI 3.1, generated from the handlers' annotations and the wire types'
//! derived schemas: the document cannot drift from the code) and `GET /docs` (Swagger UI, served
//! from the binary: no CDN).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    alerts, events, hal, history, metrics, nodes, projects, rainer, runs, slaves, status, targets, transfer, users,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mirror-sync master",
        description = "Keeps software mirrors in step: the 2014 mirror-sync API, with runs, slaves, users and status."
    ),
    paths(
        projects::add_project,
        projects::list_projects,
        projects::get_project,
        projects::put_project,
        projects::remove_project,
        projects::enable_project,
        projects::disable_project,
        projects::update_project_basic,
        projects::update_project_schedule,
        runs::syncup,
        runs::list_runs,
        runs::get_run,
        runs::stop_run,
        runs::run_log,
        runs::trigger,
        runs::trigger_run,
        runs::trigger_token,
        slaves::add_slave,
        slaves::list_slaves,
        slaves::remove_slave,
        slaves::rotate_slave_token,
        slaves::propagation,
        slaves::slave_started,
        slaves::slave_rsync_complete,
        users::create_api_user,
        users::list_users,
        users::remove_api_user,
        users::update_api_user,
        users::get_token,
        users::refresh_token,
        status::index,
        status::status,
        status::project,
        status::jobs,
        status::mirrorz,
        metrics::metrics,
        alerts::list_alerts,
        nodes::list_nodes,
        history::history,
        history::version,
        history::revert,
        history::user_history,
        history::slave_history,
        events::events,
        transfer::export,
        transfer::import,
        transfer::reload,
        targets::sync,
        targets::list_targets,
        targets::list_pushes,
        targets::get_push,
        rainer::list,
        rainer::get_latest,
        rainer::get_one,
        rainer::post,
        rainer::get_version_meta,
        hal::root,
        hal::list,
        hal::options,
        hal::patch,
        hal::get,
        hal::put,
    ),
    modifiers(&Security)
)]
pub struct ApiDoc;

/// The schemes: HTTP Basic and Bearer tokens for API users; the slave's own token for its calls;
/// a project's trigger token for an upstream's push.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme("slave", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        // A project's trigger token: as a Bearer token, or `?token=` (see `POST /trigger/{project}`).
        components.add_security_scheme("trigger_token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// `/docs` (Swagger UI, its files inside the binary) and `/openapi.json`.
pub fn docs<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_the_wire_words() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (path, _) in super::super::routes() {
            // `/enable_project/id=X`, the 2014 README's own example, is kept but not advertised.
            if path.ends_with("{arg}") {
                continue;
            }
            assert!(paths.contains_key(path), "{path} is not in the document");
        }
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["Role"]["enum"], serde_json::json!(["root", "user"]));
        assert!(schemas["Trigger"]["enum"].as_array().unwrap().contains(&serde_json::json!("catch_up")));
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        assert!(schemes.contains_key("basic") && schemes.contains_key("bearer"));
    }
}
