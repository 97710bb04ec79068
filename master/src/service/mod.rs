//! One service per resource: the rules, the transaction, the change event. Handlers call them.

pub mod documents;
pub mod history;
pub mod projects;
pub mod runs;
pub mod slaves;
pub mod transfer;
pub mod users;
