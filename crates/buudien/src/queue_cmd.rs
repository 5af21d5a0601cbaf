//! `buudien queue …`: look at and steer the outbound queue. Works while `serve` runs;
//! a running server notices flushed and bounced messages at its next queue scan.

use crate::cli::{CliError, QueueCmd};
use crate::config::Config;
use crate::store::{open_store, with_store};
use buudien_store::{QueueStore, RcptState};
use std::time::SystemTime;

/// A time as `queue list` shows it (RFC 5322 form, UTC).
fn utc(t: SystemTime) -> String {
    buudien_queue::dsn::rfc5322_date(t)
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
    with_store!(open_store(cfg).await?, |s| queue_on(&s, cmd).await)
}

async fn queue_on(store: &impl QueueStore, cmd: QueueCmd) -> Result<(), CliError> {
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
