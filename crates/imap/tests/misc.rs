//! NAMESPACE (RFC 9051 §6.3.10), ID (RFC 2971), QUOTA (RFC 9208) and the
//! capabilities that announce them, as protocol traces over an in-memory duplex
//! against a real store.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use buudien_imap::ImapConfig;
use buudien_store::Quota;
use common::*;

const AFTER_LOGIN: [&str; 11] = [
    "NAMESPACE",
    "CHILDREN",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "UTF8=ACCEPT",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    " ID ",
];

#[tokio::test]
async fn capabilities_and_id_before_login() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = connect(&server, LOOPBACK);
    let greeting = c.line().await;
    assert!(greeting.contains(" ID "), "{greeting}");
    assert!(!greeting.contains("QUOTA"), "{greeting}");
    // RFC 2971 §3.1: ID is allowed before login.
    let r = c
        .cmd(
            "a",
            "ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" NIL)",
        )
        .await;
    assert_eq!(
        r,
        format!(
            "* ID (\"name\" \"buudien\" \"version\" \"{}\")\r\na OK ID completed\r\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let r = c.cmd("b", "ID NIL").await;
    assert!(r.starts_with("* ID (\"name\" \"buudien\""), "{r}");
    assert!(r.ends_with("b OK ID completed\r\n"), "{r}");
    // More pairs than RFC 2971 allows are still answered (only 30 are logged).
    let many: Vec<String> = (0..40)
        .map(|i| format!("\"k{i}\" \"{}\"", "v".repeat(1400)))
        .collect();
    let r = c.cmd("c", &format!("ID ({})", many.join(" "))).await;
    assert!(r.ends_with("c OK ID completed\r\n"), "{r}");
    let r = c.cmd("d", "ID (\"name\")").await;
    assert!(r.starts_with("d BAD"), "{r}");
    let r = c.cmd("e", "NAMESPACE").await;
    assert_eq!(r, "e BAD not authenticated\r\n");
    let r = c.cmd("f", &format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    for cap in AFTER_LOGIN {
        assert!(r.contains(cap), "{cap} missing: {r}");
    }
    let r = c.cmd("g", "CAPABILITY").await;
    for cap in AFTER_LOGIN {
        assert!(r.contains(cap), "{cap} missing: {r}");
    }
}

#[tokio::test]
async fn namespace() {
    let env = env().await;
    let (mut c, _task, _s) = session(&env).await;
    let r = c.cmd("a", "NAMESPACE").await;
    assert_eq!(
        r,
        "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\na OK NAMESPACE completed\r\n"
    );
}

#[tokio::test]
async fn quota_without_limits() {
    let env = env().await;
    let (mut c, _task, _s) = session(&env).await;
    let r = c.cmd("a", "GETQUOTAROOT INBOX").await;
    assert_eq!(
        r,
        "* QUOTAROOT INBOX \"\"\r\n* QUOTA \"\" ()\r\na OK GETQUOTAROOT completed\r\n"
    );
}

#[tokio::test]
async fn quota_with_limits() {
    let env = env_with(Quota {
        bytes: Some(10 * 1024 * 1024),
        messages: Some(1000),
    })
    .await;
    env.deliver(MSG1).await;
    env.deliver(MSG2).await;
    let (mut c, _task, _s) = session(&env).await;
    // RFC 9208 §4.1.2: any mailbox name, existing or not, has the root "".
    let r = c.cmd("a", "GETQUOTAROOT Nowhere").await;
    assert_eq!(
        r,
        "* QUOTAROOT Nowhere \"\"\r\n\
         * QUOTA \"\" (STORAGE 1 10240 MESSAGE 2 1000)\r\n\
         a OK GETQUOTAROOT completed\r\n"
    );
    let r = c.cmd("b", "GETQUOTA \"\"").await;
    assert_eq!(
        r,
        "* QUOTA \"\" (STORAGE 1 10240 MESSAGE 2 1000)\r\nb OK GETQUOTA completed\r\n"
    );
    let r = c.cmd("c", "GETQUOTA \"#user/ann\"").await;
    assert_eq!(r, "c NO [NONEXISTENT] no such quota root\r\n");
    // Limits are the administrator's (no QUOTASET).
    let r = c.cmd("d", "SETQUOTA \"\" (STORAGE 512)").await;
    assert_eq!(r, "d NO [NOPERM] quotas are read-only\r\n");
    // Names in QUOTAROOT follow the session's encoding.
    let r = c.cmd("e", "GETQUOTAROOT &ZeVnLIqe-").await;
    assert!(r.starts_with("* QUOTAROOT &ZeVnLIqe- \"\"\r\n"), "{r}");
    // DELETED-STORAGE (RFC 9208 §4.1.4): the size of the \Deleted messages.
    let r = c.cmd("f", "SELECT INBOX").await;
    assert!(r.contains("* 2 EXISTS"), "{r}");
    let r = c.cmd("g", "STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    assert_eq!(r, "g OK STORE completed\r\n");
    let r = c
        .cmd("h", "STATUS INBOX (MESSAGES DELETED DELETED-STORAGE)")
        .await;
    assert_eq!(
        r,
        format!(
            "* STATUS INBOX (MESSAGES 2 DELETED 1 DELETED-STORAGE {})\r\nh OK STATUS completed\r\n",
            MSG2.len()
        )
    );
}
