//! One IMAP session: its state (not authenticated / authenticated / selected, RFC
//! 9051 §3), the `drive` loop over one transport and the command handlers.

use crate::Shared;
use crate::reply::*;
use crate::selected::Selected;
use buudien_imap_proto::response::{self};
use buudien_imap_proto::{
    Command, CommandFramer, LiteralInfo, LiteralMode, MAX_OVERLONG_SKIP, Request, Tag, TextMode,
};
use buudien_store::{AccountId, Flags, MailboxStore};
use buudien_types::{Address, Uid};
use std::net::SocketAddr;
use tokio::io::AsyncWrite;

/// How a transport's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The client sent LOGOUT.
    Logout,
    /// The client sent STARTTLS and got its OK: run the handshake.
    StartTls,
    /// The client went away or the transport failed.
    Closed,
    /// The client was idle for too long.
    Timeout,
    /// The server is stopping.
    Shutdown,
}

/// What the loop does after a command.
pub(crate) enum Flow {
    /// Next command.
    Continue,
    /// The command got `BAD` because the state does not allow it (RFC 9051 §3:
    /// before authentication, or without a selected mailbox): the next command is read,
    /// and this one counts towards the invalid commands in a row, like a syntax error.
    Refused,
    /// End with this outcome after flushing.
    End(Outcome),
    /// An AUTHENTICATE exchange sent a challenge: read the client's next line
    /// (RFC 9051 §6.2.2).
    Sasl(Box<crate::cmd::auth::SaslExchange>),
    /// IDLE accepted: wait for DONE (RFC 9051 §6.3.13).
    Idle(Tag),
}

/// The per-connection state.
pub(crate) struct Session<'a, S> {
    pub(crate) shared: &'a Shared<S>,
    pub(crate) peer: SocketAddr,
    pub(crate) secure: bool,
    pub(crate) starttls_offered: bool,
    pub(crate) account: Option<AccountId>,
    /// The logged-in account's address (for its quota, RFC 9208).
    pub(crate) address: Option<Address>,
    pub(crate) selected: Option<Selected>,
    pub(crate) rev2: bool,
    /// CONDSTORE is on (RFC 7162 §3.1: ENABLE, SELECT (CONDSTORE) or a MODSEQ use).
    pub(crate) condstore: bool,
    /// ENABLE QRESYNC was given (RFC 7162 §3.2.3).
    pub(crate) qresync: bool,
    /// `ENABLE UTF8=ACCEPT` was given (RFC 6855 §3).
    pub(crate) utf8: bool,
    /// Streamed APPEND literals of the current command, one per message.
    pub(crate) spool: crate::spool::Spool,
}

impl<'a, S: MailboxStore> Session<'a, S> {
    /// A session before login.
    pub(crate) fn new(
        shared: &'a Shared<S>,
        peer: SocketAddr,
        secure: bool,
        starttls: bool,
    ) -> Self {
        Session {
            shared,
            peer,
            secure,
            starttls_offered: starttls,
            account: None,
            address: None,
            selected: None,
            rev2: false,
            condstore: false,
            qresync: false,
            utf8: false,
            spool: crate::spool::Spool::new(shared.config.spool_dir.clone()),
        }
    }

    /// The transport is TLS now.
    pub(crate) fn tls_established(&mut self) {
        self.secure = true;
        self.starttls_offered = false;
    }

    /// How mailbox names travel: UTF-8 once IMAP4rev2 (RFC 9051 §5.1) or UTF8=ACCEPT
    /// (RFC 6855 §3) is enabled, modified UTF-7 before (RFC 3501 §5.1.3).
    pub(crate) fn text_mode(&self) -> TextMode {
        if self.rev2 || self.utf8 {
            TextMode::Utf8
        } else {
            TextMode::Ascii
        }
    }

    /// LOGIN and AUTHENTICATE are allowed (RFC 9051 §6.2.3, §11.1).
    pub(crate) fn auth_allowed(&self) -> bool {
        self.secure || self.peer.ip().is_loopback() || self.shared.config.allow_plaintext_auth
    }

    /// The CAPABILITY list for the current state (RFC 9051 §7.2.2).
    pub(crate) fn capabilities(&self) -> String {
        let mut caps = vec![
            "IMAP4rev2".to_owned(),
            "IMAP4rev1".to_owned(),
            // RFC 7888 §5: one or the other, never both.
            if self.shared.config.literal_plus {
                "LITERAL+"
            } else {
                "LITERAL-"
            }
            .to_owned(),
            "ENABLE".to_owned(),
            "UNSELECT".to_owned(),
            "UIDPLUS".to_owned(),
            "MOVE".to_owned(),
            "IDLE".to_owned(),
            "CONDSTORE".to_owned(),
            "QRESYNC".to_owned(),
            "BINARY".to_owned(),
            "STATUS=SIZE".to_owned(),
            "ID".to_owned(),
        ];
        if self.account.is_none() {
            if self.starttls_offered {
                caps.push("STARTTLS".to_owned());
            }
            if self.auth_allowed() {
                // RFC 9051 §7.2.2 AUTH=, RFC 4959 §3 SASL-IR.
                for cap in ["AUTH=PLAIN", "AUTH=LOGIN", "AUTH=SCRAM-SHA-256", "SASL-IR"] {
                    caps.push(cap.to_owned());
                }
            } else {
                caps.push("LOGINDISABLED".to_owned());
            }
        } else {
            caps.push(format!("APPENDLIMIT={}", self.shared.config.max_append));
            caps.push("MULTIAPPEND".to_owned());
            caps.extend(
                [
                    "ESEARCH",
                    "SEARCHRES",
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
                ]
                .map(str::to_owned),
            );
        }
        caps.join(" ")
    }

    /// A literal was announced: accept it (streaming APPEND data) or refuse it.
    pub(crate) fn literal(
        &mut self,
        framer: &mut CommandFramer,
        info: LiteralInfo,
        out: &mut Vec<u8>,
    ) -> Flow {
        let how = if info.append.is_some() {
            if self.account.is_none() || info.size > self.shared.config.max_append {
                framer.reject_literal();
                let tag = info.tag.as_ref().map_or("*", Tag::as_str);
                self.spool.clear();
                if self.account.is_none() {
                    out.extend_from_slice(format!("{tag} BAD not authenticated\r\n").as_bytes());
                    if !info.sync && info.size > MAX_OVERLONG_SKIP as u64 {
                        // Under LITERAL+ only: a client that has not logged in does
                        // not get the server to read a large literal it refused
                        // (RFC 7888 §4, second choice).
                        line(out, "* BYE [TOOBIG] command too long");
                        return Flow::End(Outcome::Logout);
                    }
                    return Flow::Refused;
                }
                out.extend_from_slice(
                    format!("{tag} NO [TOOBIG] message exceeds APPENDLIMIT\r\n").as_bytes(),
                );
                return Flow::Continue;
            }
            self.spool.begin(info.size);
            LiteralMode::Stream
        } else {
            LiteralMode::Buffer
        };
        match framer.accept_literal(how) {
            Ok(()) if info.sync => response::continuation(out, "Ready"),
            Ok(()) => {}
            Err(e) => e.write_response(out),
        }
        Flow::Continue
    }

    /// Runs one command.
    pub(crate) async fn dispatch<IO: AsyncWrite + Unpin>(
        &mut self,
        req: Request,
        out: &mut Vec<u8>,
        io: &mut IO,
    ) -> Flow {
        let Request { tag, command } = req;
        let name = command.name();
        let needs_auth = !matches!(
            command,
            Command::Capability
                | Command::Noop
                | Command::Logout
                | Command::StartTls
                | Command::Login { .. }
                | Command::Authenticate { .. }
                | Command::Id(_)
        );
        if needs_auth && self.account.is_none() {
            bad(out, &tag, "not authenticated");
            return Flow::Refused;
        }
        let needs_selected = matches!(
            command,
            Command::Fetch(_)
                | Command::Store(_)
                | Command::Expunge
                | Command::UidExpunge(_)
                | Command::Close
                | Command::Unselect
                | Command::Copy { .. }
                | Command::Move { .. }
                | Command::Search(_)
                | Command::Check
        );
        if needs_selected && self.selected.is_none() {
            bad(out, &tag, "no mailbox selected");
            return Flow::Refused;
        }
        match command {
            Command::Capability => {
                line(out, &format!("* CAPABILITY {}", self.capabilities()));
                ok(out, &tag, "CAPABILITY completed");
            }
            Command::Noop | Command::Check => {
                self.sync(out).await;
                ok(out, &tag, &format!("{name} completed"));
            }
            Command::Logout => {
                line(out, "* BYE logging out");
                ok(out, &tag, "LOGOUT completed");
                return Flow::End(Outcome::Logout);
            }
            Command::StartTls => {
                if !self.starttls_offered || self.account.is_some() {
                    bad(out, &tag, "STARTTLS not available");
                } else {
                    ok(out, &tag, "begin TLS negotiation now");
                    return Flow::End(Outcome::StartTls);
                }
            }
            Command::Login { username, password } => {
                self.login(&tag, &username, password.expose(), out).await;
            }
            Command::Authenticate { mechanism, initial } => {
                if let Some(exchange) = self.authenticate(tag, &mechanism, initial, out).await {
                    return Flow::Sasl(exchange);
                }
            }
            Command::Enable(caps) => {
                let mut enabled = Vec::new();
                for c in &caps {
                    if c.eq_ignore_ascii_case("IMAP4rev2") && !self.rev2 {
                        self.rev2 = true;
                        enabled.push("IMAP4rev2");
                    } else if c.eq_ignore_ascii_case("CONDSTORE") && !self.condstore {
                        self.condstore = true;
                        enabled.push("CONDSTORE");
                    } else if c.eq_ignore_ascii_case("QRESYNC") && !self.qresync {
                        // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                        self.qresync = true;
                        self.condstore = true;
                        enabled.push("QRESYNC");
                    }
                    // RFC 6855 §3: names and quoted strings are UTF-8 from now on.
                    if c.eq_ignore_ascii_case("UTF8=ACCEPT") && !self.utf8 {
                        self.utf8 = true;
                        enabled.push("UTF8=ACCEPT");
                    }
                }
                response::enabled(out, &enabled);
                ok(out, &tag, "ENABLE completed");
            }
            Command::Select { mailbox, params } => {
                self.select(&tag, &mailbox, &params, false, out).await
            }
            Command::Examine { mailbox, params } => {
                self.select(&tag, &mailbox, &params, true, out).await
            }
            // RFC 3501 §5.1.3: a rev1 name must be modified UTF-7; one that is not
            // names nothing and cannot be made into a mailbox or subscription.
            Command::Create { mailbox, .. }
            | Command::Rename { to: mailbox, .. }
            | Command::Subscribe(mailbox)
                if mailbox.is_invalid() =>
            {
                no(
                    out,
                    &tag,
                    "[CANNOT] mailbox name is not valid modified UTF-7",
                );
            }
            Command::Create {
                mailbox,
                special_use,
            } => self.create(&tag, &mailbox, &special_use, out).await,
            Command::Delete(mailbox) => {
                let r = self
                    .shared
                    .store
                    .delete_mailbox(self.acct(), mailbox.as_str())
                    .await;
                done(out, &tag, name, r);
            }
            Command::Rename { from, to } => {
                let r = self
                    .shared
                    .store
                    .rename_mailbox(self.acct(), from.as_str(), to.as_str())
                    .await;
                done(out, &tag, name, r);
            }
            Command::Subscribe(mailbox) | Command::Unsubscribe(mailbox) => {
                let on = name == "SUBSCRIBE";
                let r = self
                    .shared
                    .store
                    .subscribe(self.acct(), mailbox.as_str(), on)
                    .await;
                done(out, &tag, name, r);
            }
            Command::List(list) => self.list(&tag, &list, out).await,
            Command::Lsub { reference, pattern } => {
                self.lsub(&tag, &reference, &pattern, out).await
            }
            Command::Namespace => self.namespace(&tag, out),
            Command::Id(params) => self.id(&tag, params.as_deref(), out),
            Command::GetQuota(root) => self.get_quota(&tag, &root, out).await,
            Command::GetQuotaRoot(mailbox) => self.get_quota_root(&tag, &mailbox, out).await,
            Command::SetQuota { .. } => no(out, &tag, "[NOPERM] quotas are read-only"),
            Command::Status { mailbox, items } => self.status(&tag, &mailbox, &items, out).await,
            Command::Append { mailbox, messages } => {
                self.append(&tag, &mailbox, messages, out).await
            }
            Command::Close | Command::Unselect => {
                if let Some(sel) = self.selected.take()
                    && name == "CLOSE"
                    && !sel.read_only
                {
                    let uids: Vec<Uid> = sel
                        .slots
                        .iter()
                        .filter(|m| m.flags.contains(Flags::DELETED))
                        .map(|m| m.uid)
                        .collect();
                    if let Err(e) = self.shared.store.expunge(sel.id, &uids).await {
                        store_error(out, &tag, &e);
                        return Flow::Continue;
                    }
                }
                ok(out, &tag, &format!("{name} completed"));
            }
            Command::Expunge => self.expunge(&tag, None, out).await,
            Command::UidExpunge(set) => self.expunge(&tag, Some(&set), out).await,
            Command::Idle => return Flow::Idle(tag),
            Command::Fetch(f) => {
                if let Err(o) = self.fetch(&tag, &f, out, io).await {
                    return Flow::End(o);
                }
            }
            Command::Store(s) => self.store(&tag, &s, out).await,
            Command::Search(s) => self.search(&tag, &s, out).await,
            Command::Copy { uid, set, mailbox } => {
                self.copy(&tag, uid, &set, &mailbox, false, out).await;
            }
            Command::Move { uid, set, mailbox } => {
                self.copy(&tag, uid, &set, &mailbox, true, out).await;
            }
        }
        Flow::Continue
    }

    /// The client takes raw UTF-8 in strings and message headers (RFC 6855 §3: ENABLE
    /// UTF8=ACCEPT; IMAP4rev2 sessions likewise, RFC 9051 §6.3.1). Others get
    /// modified UTF-7 mailbox names and the ASCII surrogate of messages with raw
    /// UTF-8 headers (RFC 6856 §2.1 / RFC 6858 §3 policy, documented in README).
    pub(crate) fn utf8_ok(&self) -> bool {
        self.rev2 || self.utf8
    }

    /// The logged-in account (0 before login; every caller checks login first).
    pub(crate) fn acct(&self) -> AccountId {
        self.account.unwrap_or_default()
    }
}
