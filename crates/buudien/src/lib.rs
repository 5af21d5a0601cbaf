//! buudien, a whole mail server in one binary: the command line, the configuration
//! file, and `serve`, which wires the store, the listeners and the protocol sessions
//! together. This is the only crate that names a storage backend; the commands are
//! generic over the store traits and run on either.
//!
//! # Layout
//! - [`cli`]: the clap command tree, dispatch, and the one-line error/exit-code policy.
//! - [`config`]: the TOML configuration ([`config::Config`]).
//! - [`admin`]: `domain`, `user` and `alias` commands.
//! - [`deliver`]: the local delivery agent (`buudien deliver`).
//! - [`queue_cmd`]: `queue list|flush|remove|bounce`.
//! - [`check_cmd`]: `check [--quarantine]`: every blob against the index.
//! - [`quickstart`]: first-run setup: config, data dir, certificate, first account.
//! - [`serve`]: listeners, TLS, signals and graceful shutdown.
//! - [`secret`]: reading, prompting for and generating passwords.
//! - [`store`]: opening the configured backend (SQLite or PostgreSQL) and what
//!   `serve` runs only for one of them.
//! - [`auth_share`]: failed-login counts shared by the nodes of a cluster (PostgreSQL).
//!
//! # Invariants
//! - Every command fails with one line on stderr and a documented exit code, never a
//!   backtrace; `deliver` follows sysexits (0, 65, 67, 75).
//! - `deliver` exits 0 only after the store has committed the message durably.
//! - Every command opens the same store as a running `serve`; SQLite's locking makes
//!   them safe side by side, and with PostgreSQL any number of nodes and commands
//!   share one database.
//! - No password is printed except one the command generated itself, and none is
//!   logged.

pub mod admin;
pub mod auth_share;
pub mod check_cmd;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod queue_cmd;
pub mod quickstart;
pub mod secret;
pub mod serve;
pub mod store;
