//! `command = tag SP (command-any / command-auth / command-nonauth / command-select)`
//! (RFC 9051 §9): the dispatch on the command name and the grammar of the commands
//! small enough not to need their own file.

use crate::append::append;
use crate::command::{
    Command, QResync, Request, SelectParams, SpecialUse, StoreCommand, StoreMode, Tag,
};
use crate::cursor::{Cursor, Fail, LiteralSpan, PResult};
use crate::error::{CommandError, ErrorKind, excerpt};
use crate::fetch::fetch;
use crate::flag::{flag, flag_list};
use crate::list::{list, lsub, status_items};
use crate::mailbox::mailbox;
use crate::search::search;
use crate::sequence::{known_set, sequence_set};
use crate::string::TextMode;
use buudien_types::{ModSeq, Secret, UidValidity};

/// Parses one whole command: its line text with any literals in place as sent
/// (`{n}` CRLF octets), without the final CRLF. For input that arrives over a
/// connection use [`crate::CommandFramer`], which calls this for you.
pub fn parse_command(input: &[u8], mode: TextMode) -> Result<Request, CommandError> {
    parse_with(input, None, mode)
}

/// Parses a command assembled by the framer.
pub(crate) fn parse_framed(
    input: &[u8],
    spans: &[LiteralSpan],
    mode: TextMode,
) -> Result<Request, CommandError> {
    parse_with(input, Some(spans), mode)
}

fn parse_with(
    input: &[u8],
    spans: Option<&[LiteralSpan]>,
    mode: TextMode,
) -> Result<Request, CommandError> {
    let mut c = Cursor::new(input, spans, mode);
    let tag_bytes = c
        .take_while1(Tag::is_tag_char, "")
        .ok()
        .filter(|t| Tag::is_valid(t) && matches!(c.peek(), None | Some(b' ')));
    let Some(tag_bytes) = tag_bytes else {
        let text = if input.is_empty() {
            "empty command line".to_owned()
        } else {
            format!("missing or invalid tag: \"{}\"", excerpt(input))
        };
        return Err(CommandError::new(None, ErrorKind::Syntax, &text));
    };
    let tag = Tag(String::from_utf8_lossy(tag_bytes).into_owned());
    let err = |name: &str, f: Fail| {
        let text = if name.is_empty() {
            f.text.into_owned()
        } else {
            format!("{name}: {} (at octet {})", f.text, f.pos)
        };
        CommandError::new(Some(tag.clone()), f.kind, &text)
    };
    if c.sp().is_err() || c.at_end() {
        return Err(err(
            "",
            Fail {
                pos: c.pos(),
                kind: ErrorKind::Syntax,
                text: "missing command after the tag".into(),
            },
        ));
    }
    let Ok(word) = c.atom_upper() else {
        return Err(err(
            "",
            Fail {
                pos: c.pos(),
                kind: ErrorKind::Syntax,
                text: format!("invalid command name \"{}\"", excerpt(c.rest())).into(),
            },
        ));
    };
    let mut name = word.clone();
    let result = if word == "UID" {
        uid_command(&mut c, &mut name)
    } else {
        command(&mut c, &word)
    };
    match result {
        Ok(Some(command)) => match c.end() {
            Ok(()) => Ok(Request { tag, command }),
            Err(f) => Err(err(&name, f)),
        },
        Ok(None) => Err(CommandError::new(
            Some(tag.clone()),
            ErrorKind::UnknownCommand,
            &format!("unknown command {}", excerpt(name.as_bytes())),
        )),
        Err(f) => Err(err(&name, f)),
    }
}

/// `uid = "UID" SP (copy / move / fetch / search / store / uid-expunge)`.
fn uid_command(c: &mut Cursor<'_>, name: &mut String) -> PResult<Option<Command>> {
    c.sp()?;
    let sub = c.atom_upper()?;
    *name = format!("UID {sub}");
    Ok(Some(match sub.as_str() {
        "FETCH" => Command::Fetch(fetch(c, true)?),
        "SEARCH" => Command::Search(search(c, true)?),
        "STORE" => Command::Store(store(c, true)?),
        "COPY" => {
            let (set, mailbox) = set_and_mailbox(c)?;
            Command::Copy {
                uid: true,
                set,
                mailbox,
            }
        }
        "MOVE" => {
            let (set, mailbox) = set_and_mailbox(c)?;
            Command::Move {
                uid: true,
                set,
                mailbox,
            }
        }
        "EXPUNGE" => {
            c.sp()?;
            Command::UidExpunge(sequence_set(c)?)
        }
        _ => return Ok(None),
    }))
}

fn arg_mailbox(c: &mut Cursor<'_>) -> PResult<crate::Mailbox> {
    c.sp()?;
    mailbox(c)
}

fn command(c: &mut Cursor<'_>, word: &str) -> PResult<Option<Command>> {
    Ok(Some(match word {
        "CAPABILITY" => Command::Capability,
        "NOOP" => Command::Noop,
        "LOGOUT" => Command::Logout,
        "STARTTLS" => Command::StartTls,
        "AUTHENTICATE" => authenticate(c)?,
        "LOGIN" => {
            c.sp()?;
            let username = c.astring_utf8()?;
            c.sp()?;
            let password = c.astring()?.into_owned();
            Command::Login {
                username,
                password: Secret::new(password),
            }
        }
        "ENABLE" => {
            let mut caps = Vec::new();
            loop {
                c.sp()?;
                caps.push(c.atom_upper()?);
                if c.at_end() {
                    break Command::Enable(caps);
                }
            }
        }
        "SELECT" | "EXAMINE" => {
            let mailbox = arg_mailbox(c)?;
            let params = select_params(c)?;
            if word == "SELECT" {
                Command::Select { mailbox, params }
            } else {
                Command::Examine { mailbox, params }
            }
        }
        "CREATE" => {
            let mailbox = arg_mailbox(c)?;
            let special_use = create_params(c)?;
            Command::Create {
                mailbox,
                special_use,
            }
        }
        "DELETE" => Command::Delete(arg_mailbox(c)?),
        "RENAME" => {
            let from = arg_mailbox(c)?;
            Command::Rename {
                from,
                to: arg_mailbox(c)?,
            }
        }
        "SUBSCRIBE" => Command::Subscribe(arg_mailbox(c)?),
        "UNSUBSCRIBE" => Command::Unsubscribe(arg_mailbox(c)?),
        "LIST" => Command::List(list(c)?),
        "LSUB" => {
            let (reference, pattern) = lsub(c)?;
            Command::Lsub { reference, pattern }
        }
        "NAMESPACE" => Command::Namespace,
        "STATUS" => {
            let mailbox = arg_mailbox(c)?;
            c.sp()?;
            Command::Status {
                mailbox,
                items: status_items(c)?,
            }
        }
        "APPEND" => {
            let (mailbox, messages) = append(c)?;
            Command::Append { mailbox, messages }
        }
        "IDLE" => Command::Idle,
        "CHECK" => Command::Check,
        "CLOSE" => Command::Close,
        "UNSELECT" => Command::Unselect,
        "EXPUNGE" => Command::Expunge,
        "SEARCH" => Command::Search(search(c, false)?),
        "FETCH" => Command::Fetch(fetch(c, false)?),
        "STORE" => Command::Store(store(c, false)?),
        "COPY" => {
            let (set, mailbox) = set_and_mailbox(c)?;
            Command::Copy {
                uid: false,
                set,
                mailbox,
            }
        }
        "MOVE" => {
            let (set, mailbox) = set_and_mailbox(c)?;
            Command::Move {
                uid: false,
                set,
                mailbox,
            }
        }
        "ID" => Command::Id(id(c)?),
        "GETQUOTA" => {
            c.sp()?;
            Command::GetQuota(c.astring_utf8()?)
        }
        "GETQUOTAROOT" => Command::GetQuotaRoot(arg_mailbox(c)?),
        "SETQUOTA" => {
            c.sp()?;
            let root = c.astring_utf8()?;
            c.sp()?;
            let limits = c.paren_list(true, |c| {
                let name = c.atom_upper()?;
                c.sp()?;
                Ok((name, c.number64()?))
            })?;
            Command::SetQuota { root, limits }
        }
        _ => return Ok(None),
    }))
}

/// `authenticate = "AUTHENTICATE" SP auth-type [SP initial-resp]` (RFC 9051 §9,
/// RFC 4959 §7); `initial-resp = base64 / "="`.
fn authenticate(c: &mut Cursor<'_>) -> PResult<Command> {
    c.sp()?;
    let mechanism = c.atom_upper()?;
    let mut initial = None;
    if !c.at_end() {
        c.sp()?;
        let ir = c.take_while1(
            |b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='),
            "expected a base64 initial response or '='",
        )?;
        initial = Some(Secret::new(String::from_utf8_lossy(ir).into_owned()));
    }
    Ok(Command::Authenticate { mechanism, initial })
}

/// `[SP "(" select-param *(SP select-param) ")"]` (RFC 4466 §2.1, RFC 7162 §7).
fn select_params(c: &mut Cursor<'_>) -> PResult<SelectParams> {
    let mut p = SelectParams::default();
    if c.at_end() {
        return Ok(p);
    }
    c.sp()?;
    c.paren_list(false, |c| {
        let start = c.pos();
        let w = c.atom_upper()?;
        match w.as_str() {
            "CONDSTORE" if !p.condstore => p.condstore = true,
            "QRESYNC" if p.qresync.is_none() => {
                c.sp()?;
                p.qresync = Some(qresync(c)?);
            }
            _ => {
                return Err(Fail {
                    pos: start,
                    kind: ErrorKind::Syntax,
                    text: format!(
                        "unknown or repeated SELECT parameter {}",
                        excerpt(w.as_bytes())
                    )
                    .into(),
                });
            }
        }
        Ok(())
    })?;
    Ok(p)
}

/// ```text
/// "QRESYNC" SP "(" uidvalidity SP mod-sequence-value [SP known-uids]
///              [SP seq-match-data] ")"
/// seq-match-data = "(" known-sequence-set SP known-uid-set ")"
/// ```
fn qresync(c: &mut Cursor<'_>) -> PResult<QResync> {
    c.expect(b'(', "expected '(' after QRESYNC")?;
    let uid_validity = UidValidity(c.nz_number()?);
    c.sp()?;
    let modseq = ModSeq(c.number64()?);
    let mut known_uids = None;
    let mut seq_match = None;
    if c.eat(b' ') {
        if c.peek() != Some(b'(') {
            known_uids = Some(known_set(c)?);
            if c.eat(b' ') {
                seq_match = Some(seq_match_data(c)?);
            }
        } else {
            seq_match = Some(seq_match_data(c)?);
        }
    }
    c.expect(b')', "expected ')' to end the QRESYNC parameters")?;
    Ok(QResync {
        uid_validity,
        modseq,
        known_uids,
        seq_match,
    })
}

fn seq_match_data(c: &mut Cursor<'_>) -> PResult<(crate::SequenceSet, crate::SequenceSet)> {
    c.expect(b'(', "expected '(' before the sequence match data")?;
    let seqs = known_set(c)?;
    c.sp()?;
    let uids = known_set(c)?;
    c.expect(b')', "expected ')' after the sequence match data")?;
    Ok((seqs, uids))
}

/// `[SP "(" create-param *(SP create-param) ")"]`, `create-param =/ "USE" SP "("
/// [use-attr *(SP use-attr)] ")"` (RFC 6154 §6).
fn create_params(c: &mut Cursor<'_>) -> PResult<Vec<SpecialUse>> {
    let mut uses = Vec::new();
    if c.at_end() {
        return Ok(uses);
    }
    c.sp()?;
    c.paren_list(false, |c| {
        let start = c.pos();
        let w = c.atom_upper()?;
        if w != "USE" {
            return Err(Fail {
                pos: start,
                kind: ErrorKind::Syntax,
                text: format!("unknown CREATE parameter {}", excerpt(w.as_bytes())).into(),
            });
        }
        c.sp()?;
        let attrs = c.paren_list(true, |c| match flag(c)? {
            crate::Flag::Extension(name) => Ok(SpecialUse::from_name(&name)),
            crate::Flag::Flagged => Ok(SpecialUse::Flagged),
            _ => c.fail("expected a special-use attribute such as \\Drafts"),
        })?;
        uses.extend(attrs);
        Ok(())
    })?;
    Ok(uses)
}

/// `store = "STORE" SP sequence-set [SP store-modifiers] SP store-att-flags`,
/// `store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP
/// flag)))`, modifier `UNCHANGEDSINCE` (RFC 7162 §3.1.3).
fn store(c: &mut Cursor<'_>, uid: bool) -> PResult<StoreCommand> {
    c.sp()?;
    let set = sequence_set(c)?;
    c.sp()?;
    let mut unchanged_since = None;
    if c.peek() == Some(b'(') {
        c.paren_list(false, |c| {
            let start = c.pos();
            let w = c.atom_upper()?;
            if w != "UNCHANGEDSINCE" || unchanged_since.is_some() {
                return Err(Fail {
                    pos: start,
                    kind: ErrorKind::Syntax,
                    text: format!(
                        "unknown or repeated STORE modifier {}",
                        excerpt(w.as_bytes())
                    )
                    .into(),
                });
            }
            c.sp()?;
            unchanged_since = Some(ModSeq(c.number64()?));
            Ok(())
        })?;
        c.sp()?;
    }
    let mode = if c.eat(b'+') {
        StoreMode::Add
    } else if c.eat(b'-') {
        StoreMode::Remove
    } else {
        StoreMode::Replace
    };
    let silent = if c.eat_word("FLAGS") {
        false
    } else if c.eat_word("FLAGS.SILENT") {
        true
    } else {
        return c.fail("expected FLAGS, +FLAGS or -FLAGS (with .SILENT)");
    };
    c.sp()?;
    let flags = if c.peek() == Some(b'(') {
        flag_list(c)?
    } else {
        let mut v = vec![flag(c)?];
        while c.eat(b' ') {
            v.push(flag(c)?);
        }
        v
    };
    Ok(StoreCommand {
        uid,
        set,
        unchanged_since,
        mode,
        silent,
        flags,
    })
}

/// `SP sequence-set SP mailbox` (COPY, MOVE).
fn set_and_mailbox(c: &mut Cursor<'_>) -> PResult<(crate::SequenceSet, crate::Mailbox)> {
    c.sp()?;
    let set = sequence_set(c)?;
    Ok((set, arg_mailbox(c)?))
}

/// `id = "ID" SP id_params_list`, `id_params_list = "(" #(string SP nstring) ")" /
/// nil` (RFC 2971 §4).
#[allow(clippy::type_complexity)]
fn id(c: &mut Cursor<'_>) -> PResult<Option<Vec<(String, Option<String>)>>> {
    c.sp()?;
    if c.eat_word("NIL") {
        return Ok(None);
    }
    let pairs = c.paren_list(true, |c| {
        let key = c.string_utf8()?;
        c.sp()?;
        let start = c.pos();
        let value = match c.nstring()? {
            Some(v) => Some(c.utf8_at(v, start)?),
            None => None,
        };
        Ok((key, value))
    })?;
    Ok(Some(pairs))
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
