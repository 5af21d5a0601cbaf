//! The command handlers, one file per command family (DESIGN.md: `cmd/<verb>.rs`).

mod append;
pub(crate) mod auth;
mod fetch;
mod list;
mod lsub;
mod misc;
mod quota;
mod search;
mod select;
mod store;
