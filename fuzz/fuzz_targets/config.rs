//! Fuzzes the configuration file: `Config::parse` on arbitrary text, then the checks
//! `serve` runs on a parsed config before it starts (`smtp_config`, `queue_config`).
//!
//! Input layout: the whole input, read as UTF-8 (lossily), is the file's text.
//!
//! Invariants checked:
//! - Nothing panics, whatever the text (sizes, durations, addresses, nested tables).
//! - Every error is one non-empty line (the CLI prints it after `buudien: `), and one
//!   that names a line names one inside the text.

#![no_main]

use buudien::config::Config;
use buudien::serve::{queue_config, smtp_config};
use buudien_types::Load;
use libfuzzer_sys::fuzz_target;

fn check_error(text: &str, err: &str) {
    assert!(!err.is_empty(), "empty error");
    assert!(!err.contains('\n'), "error of several lines: {err:?}");
    if let Some(rest) = err.strip_prefix("line ")
        && let Some((n, _)) = rest.split_once(':')
        && let Ok(n) = n.parse::<usize>()
    {
        let lines = text.matches('\n').count() + 1;
        assert!((1..=lines).contains(&n), "line {n} of {lines}: {err:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::parse(&text) {
        Err(e) => check_error(&text, &e),
        Ok(cfg) => {
            if let Err(e) = smtp_config(&cfg, &Load::default()) {
                check_error(&text, &e.message);
            }
            if let Err(e) = queue_config(&cfg) {
                check_error(&text, &e.message);
            }
        }
    }
});
