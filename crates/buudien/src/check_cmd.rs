//! `buudien check [--quarantine]`: verifies every message file (blob) against the
//! store's index, beside a running server (see `SqliteStore::check`), and the text
//! index's structure (`SqliteStore::check_text_index`; `--quarantine` rebuilds a
//! damaged one). Prints one line
//! per problem as it is found, then the totals. Exit codes: 0 when nothing new is
//! wrong (blobs quarantined earlier are listed as `quarantined` but do not fail the
//! check: they were reported when found), 1 ([`exit::PROBLEMS`]) when problems were
//! found (even if this run quarantined them), and the usual codes when the check
//! itself fails (75 store busy or I/O, 70 otherwise, 78 configuration).

use crate::cli::{CliError, exit};
use crate::config::{Backend, Config};
use crate::store::open_sqlite;
use buudien_store_sqlite::CheckOptions;

/// Runs the check; blocking (no runtime needed).
pub fn run(cfg: &Config, quarantine: bool) -> Result<(), CliError> {
    if cfg.store.backend == Backend::Postgres {
        return Err(CliError::usage(
            "check verifies the embedded SQLite store's message files; with \
             [store] backend = \"postgres\" the messages live in PostgreSQL (use its own tools)",
        ));
    }
    let store = open_sqlite(cfg)?;
    let mut report = store.check(CheckOptions { quarantine }, &mut |p| println!("{p}"))?;
    // The text index (SEARCH BODY/TEXT) is derived data: a damaged one is rebuilt.
    if let Some(problem) = store.check_text_index(quarantine)? {
        report.problems += 1;
        if quarantine {
            println!(
                "text-index damaged ({problem}); rebuilt now, the server indexes the mail again"
            );
        } else {
            println!(
                "text-index damaged ({problem}); the server rebuilds it when it next \
                 touches it, --quarantine rebuilds it now"
            );
        }
    }
    println!(
        "checked {} blobs: {} verified ({} octets hashed), {} awaiting garbage collection, \
         {} problems, {} quarantined ({} now)",
        report.blobs,
        report.verified,
        report.bytes,
        report.garbage,
        report.problems,
        report.quarantined + report.quarantined_now,
        report.quarantined_now,
    );
    if report.problems > 0 {
        return Err(CliError::new(
            exit::PROBLEMS,
            format!(
                "{} problems found in {}",
                report.problems,
                cfg.data_dir.display()
            ),
        ));
    }
    Ok(())
}
