//! One IMAP session: its state (not authenticated / authenticated / selected, RFC
//! 9051 §3), the `drive` loop over one transport and the command handlers.

use crate::Shared;
use crate::selected::{Selected, store_flags, write_flags};
use base64::Engine as _;
use buudien_auth::Verdict;
use buudien_imap_proto::response::{self, ListItem};
use buudien_imap_proto::{
    AppendData, AppendMessage, Command, CommandFramer, DateTime, Event, FetchAttr, FetchCommand,
    LineFrame, ListCommand, LiteralInfo, LiteralMode, Mailbox as Name, Request, SequenceSet,
    StatusItem, StoreCommand, StoreMode, Tag, TextMode,
};
use buudien_store::{AccountId, FlagOp, Flags, MailboxStore, MessageEntry, StoreError};
use buudien_types::{Address, Uid};
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes asked from the transport per read.
const READ_CHUNK: usize = 4096;

/// Output is written out once this much is buffered.
const FLUSH_AT: usize = 64 * 1024;

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
enum Flow {
    /// Next command.
    Continue,
    /// End with this outcome after flushing.
    End(Outcome),
    /// AUTHENTICATE PLAIN without an initial response: read one line.
    SaslPlain(Tag),
}

/// The per-connection state.
pub(crate) struct Session<'a, S> {
    shared: &'a Shared<S>,
    peer: SocketAddr,
    secure: bool,
    starttls_offered: bool,
    account: Option<AccountId>,
    selected: Option<Selected>,
    rev2: bool,
    /// Streamed APPEND literals of the current command, one per message.
    appended: Vec<Vec<u8>>,
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
            selected: None,
            rev2: false,
            appended: Vec::new(),
        }
    }

    /// The transport is TLS now.
    pub(crate) fn tls_established(&mut self) {
        self.secure = true;
        self.starttls_offered = false;
    }

    /// LOGIN and AUTHENTICATE are allowed (RFC 9051 §6.2.3, §11.1).
    fn auth_allowed(&self) -> bool {
        self.secure || self.peer.ip().is_loopback() || self.shared.config.allow_plaintext_auth
    }

    /// The CAPABILITY list for the current state (RFC 9051 §7.2.2).
    fn capabilities(&self) -> String {
        let mut caps = vec![
            "IMAP4rev2".to_owned(),
            "IMAP4rev1".to_owned(),
            "LITERAL-".to_owned(),
            "ENABLE".to_owned(),
            "UNSELECT".to_owned(),
            "UIDPLUS".to_owned(),
            "MOVE".to_owned(),
        ];
        if self.account.is_none() {
            if self.starttls_offered {
                caps.push("STARTTLS".to_owned());
            }
            if self.auth_allowed() {
                caps.push("AUTH=PLAIN".to_owned());
            } else {
                caps.push("LOGINDISABLED".to_owned());
            }
        } else {
            caps.push(format!("APPENDLIMIT={}", self.shared.config.max_append));
        }
        caps.join(" ")
    }

    /// A literal was announced: accept it (streaming APPEND data) or refuse it.
    fn literal(&mut self, framer: &mut CommandFramer, info: LiteralInfo, out: &mut Vec<u8>) {
        let how = if info.append.is_some() {
            if self.account.is_none() || info.size > self.shared.config.max_append {
                framer.reject_literal();
                let tag = info.tag.as_ref().map_or("*", Tag::as_str);
                let reply = if self.account.is_none() {
                    format!("{tag} BAD not authenticated\r\n")
                } else {
                    format!("{tag} NO [TOOBIG] message exceeds APPENDLIMIT\r\n")
                };
                out.extend_from_slice(reply.as_bytes());
                self.appended.clear();
                return;
            }
            self.appended.push(Vec::new());
            LiteralMode::Stream
        } else {
            LiteralMode::Buffer
        };
        match framer.accept_literal(how) {
            Ok(()) if info.sync => response::continuation(out, "Ready"),
            Ok(()) => {}
            Err(e) => e.write_response(out),
        }
    }

    /// Runs one command.
    async fn dispatch<IO: AsyncWrite + Unpin>(
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
        );
        if needs_auth && self.account.is_none() {
            bad(out, &tag, "not authenticated");
            return Flow::Continue;
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
            return Flow::Continue;
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
                if self.account.is_some() {
                    bad(out, &tag, "already authenticated");
                } else if !mechanism.eq_ignore_ascii_case("PLAIN") {
                    no(out, &tag, "unsupported mechanism");
                } else if let Some(initial) = initial {
                    self.sasl_plain(&tag, initial.expose().as_bytes(), out)
                        .await;
                } else {
                    out.extend_from_slice(b"+ \r\n");
                    return Flow::SaslPlain(tag);
                }
            }
            Command::Enable(caps) => {
                let mut enabled = Vec::new();
                for c in &caps {
                    if c.eq_ignore_ascii_case("IMAP4rev2") && !self.rev2 {
                        self.rev2 = true;
                        enabled.push("IMAP4rev2");
                    }
                }
                response::enabled(out, &enabled);
                ok(out, &tag, "ENABLE completed");
            }
            Command::Select { mailbox, .. } => self.select(&tag, &mailbox, false, out).await,
            Command::Examine { mailbox, .. } => self.select(&tag, &mailbox, true, out).await,
            Command::Create { mailbox, .. } => {
                let n = mailbox.as_str().trim_end_matches('/').to_owned();
                let r = self
                    .shared
                    .store
                    .create_mailbox(self.acct(), &n, None)
                    .await;
                done(out, &tag, name, r.map(|_| ()));
            }
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
                        .messages
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
            Command::Fetch(f) => {
                if let Err(o) = self.fetch(&tag, &f, out, io).await {
                    return Flow::End(o);
                }
            }
            Command::Store(s) => self.store(&tag, &s, out).await,
            Command::Copy { uid, set, mailbox } => {
                self.copy(&tag, uid, &set, &mailbox, false, out).await;
            }
            Command::Move { uid, set, mailbox } => {
                self.copy(&tag, uid, &set, &mailbox, true, out).await;
            }
            _ => {
                out.extend_from_slice(
                    format!("{tag} NO [CANNOT] {name} not implemented yet\r\n").as_bytes(),
                );
            }
        }
        Flow::Continue
    }

    /// The logged-in account (0 before login; every caller checks login first).
    fn acct(&self) -> AccountId {
        self.account.unwrap_or_default()
    }

    /// AUTHENTICATE PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`, base64.
    async fn sasl_plain(&mut self, tag: &Tag, b64: &[u8], out: &mut Vec<u8>) {
        let trimmed = b64.strip_suffix(b"\r\n").unwrap_or(b64);
        if trimmed == b"*" {
            bad(out, tag, "authentication cancelled");
            return;
        }
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(trimmed) else {
            bad(out, tag, "invalid base64");
            return;
        };
        let mut parts = raw.split(|&b| b == 0);
        let (Some(authz), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            bad(out, tag, "malformed PLAIN response");
            return;
        };
        let (Ok(user), Ok(authz)) = (std::str::from_utf8(user), std::str::from_utf8(authz)) else {
            bad(out, tag, "malformed PLAIN response");
            return;
        };
        if !authz.is_empty() && authz != user {
            out.extend_from_slice(
                format!("{tag} NO [AUTHORIZATIONFAILED] proxy login not allowed\r\n").as_bytes(),
            );
            return;
        }
        self.login(tag, user, pass, out).await;
    }

    /// The shared login path: throttle, password check, state change.
    async fn login(&mut self, tag: &Tag, user: &str, password: &[u8], out: &mut Vec<u8>) {
        if self.account.is_some() {
            bad(out, tag, "already authenticated");
            return;
        }
        if !self.auth_allowed() {
            out.extend_from_slice(
                format!("{tag} NO [PRIVACYREQUIRED] use STARTTLS first\r\n").as_bytes(),
            );
            return;
        }
        let ip = self.peer.ip();
        let throttle = &self.shared.throttle;
        if throttle.check(ip, Instant::now()) == Verdict::Refuse {
            out.extend_from_slice(
                format!("{tag} NO [UNAVAILABLE] too many failed logins, try later\r\n").as_bytes(),
            );
            return;
        }
        let record = match Address::parse(user) {
            Ok(addr) => match self.shared.store.auth_record(&addr).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "auth record lookup failed");
                    out.extend_from_slice(
                        format!("{tag} NO [UNAVAILABLE] try again later\r\n").as_bytes(),
                    );
                    return;
                }
            },
            Err(_) => None,
        };
        let pw = password.to_vec();
        let account = match record {
            Some(r) => {
                let hash = r.password_hash.clone();
                let good =
                    tokio::task::spawn_blocking(move || buudien_auth::verify_password(&hash, &pw))
                        .await
                        .unwrap_or(false);
                good.then_some(r.account_id)
            }
            None => {
                let _ = tokio::task::spawn_blocking(move || buudien_auth::dummy_verify(&pw)).await;
                None
            }
        };
        match account {
            Some(id) => {
                throttle.record_success(ip);
                self.account = Some(id);
                tracing::info!(account = id, "logged in");
                let caps = self.capabilities();
                ok(out, tag, &format!("[CAPABILITY {caps}] logged in"));
            }
            None => {
                let delay = throttle.record_failure(ip, Instant::now());
                tokio::time::sleep(delay).await;
                out.extend_from_slice(
                    format!("{tag} NO [AUTHENTICATIONFAILED] invalid credentials\r\n").as_bytes(),
                );
            }
        }
    }

    /// SELECT / EXAMINE (RFC 9051 §6.3.2, §6.3.3).
    async fn select(&mut self, tag: &Tag, mailbox: &Name, read_only: bool, out: &mut Vec<u8>) {
        self.selected = None;
        let store = &self.shared.store;
        let mb = match store.mailbox(self.acct(), mailbox.as_str()).await {
            Ok(Some(mb)) => mb,
            Ok(None) => {
                nonexistent(out, tag);
                return;
            }
            Err(e) => return store_error(out, tag, &e),
        };
        let messages = match store.messages(mb.id).await {
            Ok(m) => m,
            Err(e) => return store_error(out, tag, &e),
        };
        let sel = Selected {
            id: mb.id,
            read_only,
            messages,
        };
        line(out, &format!("* {} EXISTS", sel.len()));
        if !self.rev2 {
            // RFC 3501 §6.3.1 requires RECENT; buudien keeps no \Recent state.
            line(out, "* 0 RECENT");
        }
        line(
            out,
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
        );
        if read_only {
            line(out, "* OK [PERMANENTFLAGS ()] read-only");
        } else {
            line(
                out,
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] flags",
            );
        }
        line(
            out,
            &format!("* OK [UIDVALIDITY {}] UIDs valid", mb.uidvalidity.0),
        );
        line(out, &format!("* OK [UIDNEXT {}] next UID", mb.uidnext.0));
        line(
            out,
            &format!("* OK [HIGHESTMODSEQ {}] modseq", mb.highestmodseq),
        );
        if self.rev2 {
            response::list(
                out,
                &ListItem {
                    attrs: &[],
                    delimiter: Some('/'),
                    name: &mb.name,
                    childinfo_subscribed: false,
                    old_name: None,
                },
                TextMode::Ascii,
                false,
            );
        }
        self.selected = Some(sel);
        let code = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        let cmd = if read_only { "EXAMINE" } else { "SELECT" };
        ok(out, tag, &format!("[{code}] {cmd} completed"));
    }

    /// Reports what changed in the selected mailbox since the snapshot.
    async fn sync(&mut self, out: &mut Vec<u8>) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        match self.shared.store.messages(sel.id).await {
            Ok(now) => sel.sync(now, out),
            Err(e) => tracing::warn!(error = %e, "mailbox refresh failed"),
        }
    }

    /// LIST (RFC 9051 §6.3.9) with `*` and `%` patterns, no selection options.
    async fn list(&mut self, tag: &Tag, list: &ListCommand, out: &mut Vec<u8>) {
        if list.patterns.iter().all(String::is_empty) {
            line(out, "* LIST (\\Noselect) \"/\" \"\"");
            ok(out, tag, "LIST completed");
            return;
        }
        let boxes = match self.shared.store.mailboxes(self.acct()).await {
            Ok(b) => b,
            Err(e) => return store_error(out, tag, &e),
        };
        for mb in &boxes {
            let hit = list.patterns.iter().any(|p| {
                let full = format!("{}{}", list.reference, p);
                matches_pattern(full.as_bytes(), mb.name.as_bytes())
                    || (mb.name == "INBOX"
                        && matches_pattern(full.to_ascii_uppercase().as_bytes(), b"INBOX"))
            });
            if !hit {
                continue;
            }
            let has_children = boxes.iter().any(|o| {
                o.name.len() > mb.name.len() && o.name.starts_with(&format!("{}/", mb.name))
            });
            let mut attrs = vec![if has_children {
                buudien_imap_proto::MailboxAttr::HasChildren
            } else {
                buudien_imap_proto::MailboxAttr::HasNoChildren
            }];
            if mb.subscribed {
                attrs.push(buudien_imap_proto::MailboxAttr::Subscribed);
            }
            if let Some(su) = mb.special_use {
                // RFC 6154 §2: the special-use attribute rides on plain LIST.
                attrs.push(buudien_imap_proto::MailboxAttr::SpecialUse(
                    buudien_imap_proto::SpecialUse::from_name(su.as_str().trim_start_matches('\\')),
                ));
            }
            response::list(
                out,
                &ListItem {
                    attrs: &attrs,
                    delimiter: Some('/'),
                    name: &mb.name,
                    childinfo_subscribed: false,
                    old_name: None,
                },
                TextMode::Ascii,
                false,
            );
        }
        ok(out, tag, "LIST completed");
    }

    /// STATUS (RFC 9051 §6.3.11).
    async fn status(&mut self, tag: &Tag, mailbox: &Name, items: &[StatusItem], out: &mut Vec<u8>) {
        let store = &self.shared.store;
        let mb = match store.mailbox(self.acct(), mailbox.as_str()).await {
            Ok(Some(mb)) => mb,
            Ok(None) => return nonexistent(out, tag),
            Err(e) => return store_error(out, tag, &e),
        };
        let messages = match store.messages(mb.id).await {
            Ok(m) => m,
            Err(e) => return store_error(out, tag, &e),
        };
        let count =
            |f: &dyn Fn(&MessageEntry) -> bool| messages.iter().filter(|m| f(m)).count() as u64;
        let values: Vec<(StatusItem, Option<u64>)> = items
            .iter()
            .map(|item| {
                let v = match item {
                    StatusItem::Messages => Some(messages.len() as u64),
                    StatusItem::UidNext => Some(u64::from(mb.uidnext.0)),
                    StatusItem::UidValidity => Some(u64::from(mb.uidvalidity.0)),
                    StatusItem::Unseen => Some(count(&|m| !m.flags.contains(Flags::SEEN))),
                    StatusItem::Deleted => Some(count(&|m| m.flags.contains(Flags::DELETED))),
                    StatusItem::Size => Some(messages.iter().map(|m| m.size).sum()),
                    StatusItem::Recent => Some(0),
                    StatusItem::HighestModSeq => Some(mb.highestmodseq),
                    StatusItem::AppendLimit => Some(self.shared.config.max_append),
                    StatusItem::DeletedStorage => None,
                };
                (*item, v)
            })
            .collect();
        response::status(out, &mb.name, &values, TextMode::Ascii);
        ok(out, tag, "STATUS completed");
    }

    /// APPEND (RFC 9051 §6.3.12) with APPENDUID (RFC 4315 §3).
    async fn append(
        &mut self,
        tag: &Tag,
        mailbox: &Name,
        messages: Vec<AppendMessage>,
        out: &mut Vec<u8>,
    ) {
        let mut streamed = std::mem::take(&mut self.appended).into_iter();
        let store = &self.shared.store;
        let mb = match store.mailbox(self.acct(), mailbox.as_str()).await {
            Ok(Some(mb)) => mb,
            Ok(None) => {
                out.extend_from_slice(
                    format!("{tag} NO [TRYCREATE] no such mailbox\r\n").as_bytes(),
                );
                return;
            }
            Err(e) => return store_error(out, tag, &e),
        };
        let mut uids = Vec::new();
        for msg in messages {
            let data = match msg.data {
                AppendData::Buffered(b) => b,
                AppendData::Streamed { .. } => streamed.next().unwrap_or_default(),
            };
            let (flags, keywords) = store_flags(&msg.flags);
            let received = msg
                .date
                .and_then(|d| {
                    u64::try_from(d.unix_time())
                        .ok()
                        .map(|s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s))
                })
                .unwrap_or_else(SystemTime::now);
            match store.append(mb.id, &data, flags, &keywords, received).await {
                Ok(e) => uids.push(e.uid.0),
                Err(e) => return store_error(out, tag, &e),
            }
        }
        let set = uid_set(&uids);
        ok(
            out,
            tag,
            &format!("[APPENDUID {} {set}] APPEND completed", mb.uidvalidity.0),
        );
    }

    /// EXPUNGE (RFC 9051 §6.4.3) and UID EXPUNGE (RFC 9051 §6.4.9).
    async fn expunge(&mut self, tag: &Tag, only: Option<&SequenceSet>, out: &mut Vec<u8>) {
        let Some(sel) = self.selected.as_ref() else {
            return bad(out, tag, "no mailbox selected");
        };
        if sel.read_only {
            return no(out, tag, "mailbox is read-only");
        }
        let allowed = only.map(|s| sel.uids(s, true));
        let uids: Vec<Uid> = sel
            .messages
            .iter()
            .filter(|m| m.flags.contains(Flags::DELETED))
            .filter(|m| allowed.as_ref().is_none_or(|a| a.contains(&m.uid)))
            .map(|m| m.uid)
            .collect();
        if let Err(e) = self.shared.store.expunge(sel.id, &uids).await {
            return store_error(out, tag, &e);
        }
        self.sync(out).await;
        ok(out, tag, "EXPUNGE completed");
    }

    /// FETCH / UID FETCH (RFC 9051 §6.4.5) of UID, FLAGS, INTERNALDATE, RFC822.SIZE,
    /// MODSEQ, BODY[] / BODY.PEEK[] / RFC822 (whole message only).
    async fn fetch<IO: AsyncWrite + Unpin>(
        &mut self,
        tag: &Tag,
        f: &FetchCommand,
        out: &mut Vec<u8>,
        io: &mut IO,
    ) -> Result<(), Outcome> {
        let Some(sel) = self.selected.as_ref() else {
            bad(out, tag, "no mailbox selected");
            return Ok(());
        };
        for attr in &f.items {
            let whole = match attr {
                FetchAttr::BodySection {
                    section, partial, ..
                } => section.part.is_empty() && section.text.is_none() && partial.is_none(),
                _ => true,
            };
            let supported = matches!(
                attr,
                FetchAttr::Uid
                    | FetchAttr::Flags
                    | FetchAttr::InternalDate
                    | FetchAttr::Rfc822Size
                    | FetchAttr::ModSeq
                    | FetchAttr::Rfc822
                    | FetchAttr::BodySection { .. }
            );
            if !supported || !whole {
                out.extend_from_slice(
                    format!("{tag} NO [CANNOT] fetch item not implemented yet\r\n").as_bytes(),
                );
                return Ok(());
            }
        }
        let targets = sel.resolve(&f.set, f.uid);
        let sets_seen = !sel.read_only && f.items.iter().any(FetchAttr::sets_seen);
        let id = sel.id;
        let mut entries: Vec<(u32, MessageEntry)> = targets
            .iter()
            .filter_map(|&(seq, i)| sel.messages.get(i).map(|m| (seq, m.clone())))
            .collect();
        let store = &self.shared.store;
        if sets_seen {
            let unseen: Vec<Uid> = entries
                .iter()
                .filter(|(_, m)| !m.flags.contains(Flags::SEEN))
                .map(|(_, m)| m.uid)
                .collect();
            if !unseen.is_empty() {
                match store
                    .store_flags(id, &unseen, FlagOp::Add, Flags::SEEN, &[], None)
                    .await
                {
                    Ok(stored) => {
                        for changed in stored.changed {
                            if let Some(sel) = self.selected.as_mut()
                                && let Ok(i) =
                                    sel.messages.binary_search_by_key(&changed.uid, |m| m.uid)
                                && let Some(slot) = sel.messages.get_mut(i)
                            {
                                *slot = changed.clone();
                            }
                            for (_, e) in entries.iter_mut() {
                                if e.uid == changed.uid {
                                    *e = changed.clone();
                                }
                            }
                        }
                    }
                    Err(e) => {
                        store_error(out, tag, &e);
                        return Ok(());
                    }
                }
            }
        }
        let idle = self.shared.config.idle_timeout;
        for (seq, m) in &entries {
            let mut r = response::FetchResponse::start(out, *seq, TextMode::Ascii);
            if f.uid && !f.items.contains(&FetchAttr::Uid) {
                r.uid(m.uid.0);
            }
            let mut bodies = Vec::new();
            for attr in &f.items {
                match attr {
                    FetchAttr::Uid => r.uid(m.uid.0),
                    FetchAttr::Flags => {
                        let mut v = Vec::new();
                        write_flags(&mut v, m);
                        r.raw("FLAGS", &v);
                    }
                    FetchAttr::InternalDate => {
                        let secs = m
                            .received
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
                        if let Some(dt) = DateTime::from_unix(secs, 0) {
                            r.internal_date(&dt);
                        }
                    }
                    FetchAttr::Rfc822Size => r.rfc822_size(m.size),
                    FetchAttr::ModSeq => r.modseq(buudien_types::ModSeq(m.modseq)),
                    _ => bodies.push(attr),
                }
            }
            // Bodies go last (item order is free, RFC 9051 §7.5.2): each is a literal
            // header, then the blob copied straight to the transport.
            let mut first = true;
            for attr in bodies {
                if first {
                    r.section_header(attr, m.size, false);
                    first = false;
                } else {
                    let buf = r.buffer();
                    buf.push(b' ');
                    attr.write_response_name(buf);
                    buf.extend_from_slice(format!(" {{{}}}\r\n", m.size).as_bytes());
                }
                let reader = match store.read_blob(&m.blob).await {
                    Ok(reader) => reader,
                    Err(e) => {
                        // The literal header is announced: the only way out is to close.
                        tracing::warn!(error = %e, "blob unavailable mid-FETCH");
                        return Err(Outcome::Closed);
                    }
                };
                stream_blob(io, r.buffer(), idle, reader, m.size).await?;
            }
            r.finish();
        }
        ok(
            out,
            tag,
            &format!("{} completed", if f.uid { "UID FETCH" } else { "FETCH" }),
        );
        Ok(())
    }

    /// STORE / UID STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3).
    async fn store(&mut self, tag: &Tag, s: &StoreCommand, out: &mut Vec<u8>) {
        let Some(sel) = self.selected.as_mut() else {
            return bad(out, tag, "no mailbox selected");
        };
        if sel.read_only {
            return no(out, tag, "mailbox is read-only");
        }
        let uids = sel.uids(&s.set, s.uid);
        let (flags, keywords) = store_flags(&s.flags);
        let op = match s.mode {
            StoreMode::Replace => FlagOp::Set,
            StoreMode::Add => FlagOp::Add,
            StoreMode::Remove => FlagOp::Remove,
        };
        let stored = match self
            .shared
            .store
            .store_flags(
                sel.id,
                &uids,
                op,
                flags,
                &keywords,
                s.unchanged_since.map(|m| m.0),
            )
            .await
        {
            Ok(st) => st,
            Err(e) => return store_error(out, tag, &e),
        };
        for changed in stored.changed {
            let Ok(i) = sel.messages.binary_search_by_key(&changed.uid, |m| m.uid) else {
                continue;
            };
            if let Some(slot) = sel.messages.get_mut(i) {
                *slot = changed;
            }
            if s.silent && s.unchanged_since.is_none() {
                continue;
            }
            if let Some(m) = sel.messages.get(i) {
                let mut l = format!("* {} FETCH (", i + 1).into_bytes();
                if s.uid {
                    l.extend_from_slice(format!("UID {} ", m.uid.0).as_bytes());
                }
                l.extend_from_slice(b"FLAGS ");
                write_flags(&mut l, m);
                if s.unchanged_since.is_some() {
                    l.extend_from_slice(format!(" MODSEQ ({})", m.modseq).as_bytes());
                }
                l.extend_from_slice(b")\r\n");
                out.extend_from_slice(&l);
            }
        }
        let what = if s.uid { "UID STORE" } else { "STORE" };
        if stored.modified.is_empty() {
            ok(out, tag, &format!("{what} completed"));
        } else {
            let ids: Vec<u32> = if s.uid {
                stored.modified.iter().map(|u| u.0).collect()
            } else {
                stored
                    .modified
                    .iter()
                    .filter_map(|u| sel.seq_of(*u))
                    .collect()
            };
            ok(
                out,
                tag,
                &format!("[MODIFIED {}] conditional {what} failed", uid_set(&ids)),
            );
        }
    }

    /// COPY / MOVE and their UID forms (RFC 9051 §6.4.7, §6.4.8) with COPYUID.
    async fn copy(
        &mut self,
        tag: &Tag,
        uid: bool,
        set: &SequenceSet,
        mailbox: &Name,
        moving: bool,
        out: &mut Vec<u8>,
    ) {
        let Some(sel) = self.selected.as_ref() else {
            return bad(out, tag, "no mailbox selected");
        };
        if moving && sel.read_only {
            return no(out, tag, "mailbox is read-only");
        }
        let uids = sel.uids(set, uid);
        let store = &self.shared.store;
        let to = match store.mailbox(self.acct(), mailbox.as_str()).await {
            Ok(Some(mb)) => mb,
            Ok(None) => {
                out.extend_from_slice(
                    format!("{tag} NO [TRYCREATE] no such mailbox\r\n").as_bytes(),
                );
                return;
            }
            Err(e) => return store_error(out, tag, &e),
        };
        let pairs = if moving {
            store.move_messages(sel.id, &uids, to.id).await
        } else {
            store.copy(sel.id, &uids, to.id).await
        };
        let pairs = match pairs {
            Ok(p) => p,
            Err(e) => return store_error(out, tag, &e),
        };
        let code = if pairs.is_empty() {
            String::new()
        } else {
            let from: Vec<u32> = pairs.iter().map(|p| p.0.0).collect();
            let new: Vec<u32> = pairs.iter().map(|p| p.1.0).collect();
            format!(
                "[COPYUID {} {} {}] ",
                to.uidvalidity.0,
                uid_list(&from),
                uid_list(&new)
            )
        };
        let what = match (uid, moving) {
            (false, false) => "COPY",
            (true, false) => "UID COPY",
            (false, true) => "MOVE",
            (true, true) => "UID MOVE",
        };
        if moving {
            // RFC 6851 §4.3: COPYUID goes in an untagged OK before the expunges.
            if !code.is_empty() {
                line(out, &format!("* OK {}moved", code));
            }
            self.sync(out).await;
            ok(out, tag, &format!("{what} completed"));
        } else {
            ok(out, tag, &format!("{code}{what} completed"));
        }
    }
}

/// `1,3:5` for a sorted list of numbers.
fn uid_set(numbers: &[u32]) -> String {
    match SequenceSet::compact(numbers.iter().copied()) {
        Some(set) => set.to_string(),
        None => uid_list(numbers),
    }
}

/// `4,2,9`: numbers in the given order (COPYUID pairs must keep their order).
fn uid_list(numbers: &[u32]) -> String {
    numbers
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// LIST pattern matching (RFC 9051 §6.3.9): `*` matches anything, `%` anything but
/// the delimiter `/`.
fn matches_pattern(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| {
            name.get(i..)
                .is_some_and(|tail| matches_pattern(rest, tail))
        }),
        Some((b'%', rest)) => (0..=name.len())
            .take_while(|&i| i == 0 || name.get(i - 1) != Some(&b'/'))
            .any(|i| {
                name.get(i..)
                    .is_some_and(|tail| matches_pattern(rest, tail))
            }),
        Some((c, rest)) => match name.split_first() {
            Some((n, tail)) if n == c => matches_pattern(rest, tail),
            _ => false,
        },
    }
}

/// One untagged line.
fn line(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `tag OK text`.
fn ok(out: &mut Vec<u8>, tag: &Tag, text: &str) {
    out.extend_from_slice(format!("{tag} OK {text}\r\n").as_bytes());
}

/// `tag NO text`.
fn no(out: &mut Vec<u8>, tag: &Tag, text: &str) {
    out.extend_from_slice(format!("{tag} NO {text}\r\n").as_bytes());
}

/// `tag BAD text`.
fn bad(out: &mut Vec<u8>, tag: &Tag, text: &str) {
    out.extend_from_slice(format!("{tag} BAD {text}\r\n").as_bytes());
}

/// `tag NO [NONEXISTENT] ...`.
fn nonexistent(out: &mut Vec<u8>, tag: &Tag) {
    out.extend_from_slice(format!("{tag} NO [NONEXISTENT] no such mailbox\r\n").as_bytes());
}

/// OK, or the store error as NO with its response code.
fn done(out: &mut Vec<u8>, tag: &Tag, name: &str, r: Result<(), StoreError>) {
    match r {
        Ok(()) => ok(out, tag, &format!("{name} completed")),
        Err(e) => store_error(out, tag, &e),
    }
}

/// A store error as `NO` with the response code of RFC 9051 §7.1.
fn store_error(out: &mut Vec<u8>, tag: &Tag, e: &StoreError) {
    let code = match e {
        StoreError::NotFound(_) => "NONEXISTENT",
        StoreError::Exists(_) => "ALREADYEXISTS",
        StoreError::Refused(_) => "CANNOT",
        StoreError::OverQuota(_) => "OVERQUOTA",
        StoreError::Busy => "INUSE",
        _ => {
            tracing::warn!(error = %e, "store error");
            "SERVERBUG"
        }
    };
    out.extend_from_slice(format!("{tag} NO [{code}] operation failed\r\n").as_bytes());
}

/// Resolves once `stop` turns true; never, if the sender is gone.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Writes out `out`, bounded by `idle`.
async fn flush<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut Vec<u8>,
    idle: std::time::Duration,
) -> Result<(), Outcome> {
    if out.is_empty() {
        return Ok(());
    }
    let write = async {
        io.write_all(out).await?;
        io.flush().await
    };
    match tokio::time::timeout(idle, write).await {
        Ok(Ok(())) => {
            out.clear();
            Ok(())
        }
        Ok(Err(_)) => Err(Outcome::Closed),
        Err(_) => Err(Outcome::Timeout),
    }
}

/// Sends what is buffered, then exactly `size` octets of `reader` (a literal whose
/// header is already in `out`). Anything short of that leaves the client expecting
/// more octets, so the session must end.
async fn stream_blob<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut Vec<u8>,
    idle: std::time::Duration,
    reader: buudien_store::BlobReader,
    size: u64,
) -> Result<(), Outcome> {
    flush(io, out, idle).await?;
    let mut limited = reader.take(size);
    let copied = match tokio::time::timeout(idle, tokio::io::copy(&mut limited, io)).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "FETCH stream failed");
            return Err(Outcome::Closed);
        }
        Err(_) => return Err(Outcome::Timeout),
    };
    if copied != size {
        tracing::warn!(copied, size, "blob shorter than its recorded size");
        return Err(Outcome::Closed);
    }
    Ok(())
}

/// Reads more input into `inbuf`, after flushing `out`.
async fn read_more<IO: AsyncRead + AsyncWrite + Unpin>(
    io: &mut IO,
    inbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    chunk: &mut [u8],
    idle: std::time::Duration,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), Outcome> {
    flush(io, out, idle).await?;
    if *stop.borrow() {
        return Err(Outcome::Shutdown);
    }
    let read = tokio::time::timeout(idle, io.read(chunk));
    let n = tokio::select! {
        r = read => match r {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return Err(Outcome::Closed),
            Err(_) => return Err(Outcome::Timeout),
        },
        () = stopped(stop) => return Err(Outcome::Shutdown),
    };
    if n == 0 {
        return Err(Outcome::Closed);
    }
    inbuf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    Ok(())
}

/// Runs the session over one transport until it ends. `greet` sends the greeting
/// (not after STARTTLS).
pub(crate) async fn drive<S: MailboxStore, IO: AsyncRead + AsyncWrite + Unpin>(
    s: &mut Session<'_, S>,
    io: &mut IO,
    greet: bool,
) -> Outcome {
    let idle = s.shared.config.idle_timeout;
    let mut stop = s.shared.stopping.subscribe();
    let mut framer = CommandFramer::new(buudien_imap_proto::Limits::default(), TextMode::Ascii);
    let mut inbuf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    if greet {
        line(
            &mut out,
            &format!(
                "* OK [CAPABILITY {}] {} buudien IMAP4rev2 ready",
                s.capabilities(),
                s.shared.config.hostname
            ),
        );
    }
    loop {
        let event = framer.next_event(&mut inbuf);
        let flow = match event {
            Event::Incomplete => {
                match read_more(io, &mut inbuf, &mut out, &mut chunk, idle, &mut stop).await {
                    Ok(()) => Flow::Continue,
                    Err(o) => Flow::End(o),
                }
            }
            Event::Literal(info) => {
                s.literal(&mut framer, info, &mut out);
                Flow::Continue
            }
            Event::LiteralChunk(bytes) => {
                if let Some(last) = s.appended.last_mut() {
                    last.extend_from_slice(&bytes);
                }
                Flow::Continue
            }
            Event::LiteralEnd => Flow::Continue,
            Event::Error(e) => {
                s.appended.clear();
                e.write_response(&mut out);
                Flow::Continue
            }
            Event::Command(req) => s.dispatch(req, &mut out, io).await,
        };
        match flow {
            Flow::Continue => {
                if out.len() >= FLUSH_AT
                    && let Err(o) = flush(io, &mut out, idle).await
                {
                    return o;
                }
            }
            Flow::SaslPlain(tag) => loop {
                match framer.next_line(&mut inbuf, buudien_imap_proto::MAX_SASL_LINE) {
                    LineFrame::Line(l) => {
                        s.sasl_plain(&tag, &l, &mut out).await;
                        break;
                    }
                    LineFrame::TooLong => {
                        bad(&mut out, &tag, "line too long");
                        break;
                    }
                    LineFrame::Incomplete => {
                        if let Err(o) =
                            read_more(io, &mut inbuf, &mut out, &mut chunk, idle, &mut stop).await
                        {
                            return o;
                        }
                    }
                }
            },
            Flow::End(o) => {
                match o {
                    Outcome::Timeout => line(&mut out, "* BYE autologout, idle too long"),
                    Outcome::Shutdown => line(&mut out, "* BYE server shutting down"),
                    _ => {}
                }
                if o != Outcome::Closed {
                    let _ = flush(io, &mut out, idle.min(crate::FINAL_WRITE_TIMEOUT)).await;
                }
                return o;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches_pattern(b"*", b"a/b"));
        assert!(!matches_pattern(b"%", b"a/b"));
        assert!(matches_pattern(b"%", b"INBOX"));
        assert!(matches_pattern(b"a/%", b"a/b"));
        assert!(matches_pattern(b"a*", b"a/b/c"));
        assert!(!matches_pattern(b"b*", b"a"));
    }
}
