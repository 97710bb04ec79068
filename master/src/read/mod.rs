//! What the master shows of its state, read rather than changed: the listing cache behind
//! `GET /list_projects/`, the wire views of stored rows, the public status page, the Prometheus
//! metrics and the live feed of changes (`GET /events`). Each listens to the change events; none
//! of them changes a project.

pub mod feed;
pub mod listing;
pub mod metrics;
pub mod mirrorz;
pub mod status_page;
pub mod views;
