//! `buudien queue …`: look at and steer the outbound queue. Works while `serve` runs;
//! a running server notices flushed and bounced messages at its next queue scan.

use crate::admin::open_store;
use crate::cli::{CliError, QueueCmd};
use crate::config::Config;
use buudien_store::{QueueStore, RcptState};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC.
fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn state(s: RcptState) -> &'static str {
    match s {
        RcptState::Pending => "pending",
        RcptState::Delivered => "delivered",
        RcptState::Failed => "failed",
    }
}

/// `buudien queue …`
pub async fn queue(cfg: &Config, cmd: QueueCmd) -> Result<(), CliError> {
    let store = open_store(cfg)?;
    match cmd {
        QueueCmd::List => {
            let list = store.queue_list().await?;
            if list.is_empty() {
                println!("the queue is empty");
            }
            for m in list {
                let sender = if m.envelope.sender.is_empty() {
                    "<>".to_string()
                } else {
                    m.envelope.sender.clone()
                };
                println!(
                    "{}\t{}\t{} bytes\tqueued {}",
                    m.id,
                    sender,
                    m.size,
                    utc(m.queued_at)
                );
                for r in &m.recipients {
                    let next = if r.state == RcptState::Pending {
                        let when = if r.next_attempt <= SystemTime::now() {
                            "now".to_string()
                        } else {
                            utc(r.next_attempt)
                        };
                        format!("\tnext attempt {when}")
                    } else {
                        String::new()
                    };
                    let reply = r
                        .last_reply
                        .as_deref()
                        .map(|x| format!("\t{x}"))
                        .unwrap_or_default();
                    println!(
                        "\t{}\t{}\t{} attempts{next}{reply}",
                        r.address,
                        state(r.state),
                        r.attempts
                    );
                }
            }
        }
        QueueCmd::Flush { id } => {
            let n = store.queue_flush(id).await?;
            println!("{n} recipients due now");
        }
        QueueCmd::Remove { id } => {
            store.queue_remove(id).await?;
            println!("message {id} removed from the queue (no report sent)");
        }
        QueueCmd::Bounce { id } => {
            let n = store
                .queue_bounce(
                    id,
                    "5.0.0 message removed from the queue by the administrator",
                )
                .await?;
            println!("{n} recipients of message {id} failed; the sender gets a report");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_737_600 + 3661);
        assert_eq!(utc(t), "2026-11-27 01:01:01");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc(leap), "2000-02-29 00:00:00");
    }
}
