//! The end-to-end tests, one module per area, in one test binary (see tests/Cargo.toml).
//! Run one area with `cargo test -p mirror-tests --test e2e -- AREA::`.

mod alerts;
mod api;
mod binary;
mod cluster;
mod console;
mod ctl;
mod declared;
mod depends;
mod doc_curl;
mod documents;
mod events;
mod faults;
mod freshness;
mod hardening;
mod history;
mod hooks;
mod intervals;
mod kinds;
mod mirrorz;
mod netns;
mod newcomer;
mod nodes;
mod openapi;
mod publish;
mod rainer;
mod runs;
mod security;
mod snapshots;
mod status;
mod targets;
mod transfer;
mod triggers;
mod unchanged;
mod upstreams;
