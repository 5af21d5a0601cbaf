//! ENVELOPE, BODY and BODYSTRUCTURE as RFC 9051 §7.5.2 writes them, shaped like
//! Dovecot's `imap-envelope.c` / `imap-bodystructure.c` output:
//! - subject and display names go through [`wire::string_for_humans`], the other
//!   envelope strings have their line breaks removed, addresses are four nstrings;
//! - Sender and Reply-To fall back to From;
//! - a text part without `charset` gets `("charset" "us-ascii")`; a part without
//!   `Content-Transfer-Encoding` shows `"7bit"`; a part without `Content-Type` is
//!   `"text" "plain"`; a multipart without parts shows one empty text/plain part;
//! - extension data (BODYSTRUCTURE only): md5, disposition, language, location for
//!   single parts; parameters, disposition, language, location for multiparts.

use crate::meta::{Address, Body, Envelope, MessageMeta, Param, Part};
use crate::wire::{nil, nstring, nstring_nolf, string, string_for_humans};

/// What a multipart without parts shows as its one part (BODY form).
const EMPTY_BODY: &[u8] = b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)";
/// The same with BODYSTRUCTURE extension data.
const EMPTY_BODYSTRUCTURE: &[u8] =
    b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)";

/// Writes the message's ENVELOPE, parenthesised: `(date subject from sender reply-to
/// to cc bcc in-reply-to message-id)`. `utf8`: the session is IMAP4rev2 or enabled
/// `UTF8=ACCEPT`, so UTF-8 may appear in quoted strings; otherwise 8-bit text goes in
/// literals, as Dovecot sends it (serve the [`crate::downgrade`]d message's meta to
/// such sessions to keep them 7-bit).
pub fn render_envelope(meta: &MessageMeta, out: &mut Vec<u8>, utf8: bool) {
    out.push(b'(');
    envelope(&meta.envelope, out, utf8);
    out.push(b')');
}

/// Writes the message's BODYSTRUCTURE (`extensible` = true) or BODY (false),
/// parenthesised. With `utf8`, RFC 2231 parameters are shown decoded
/// (`"filename" "€.txt"`); without it they keep Dovecot's 7-bit `"filename*"
/// "utf-8''%E2%82%AC.txt"` form.
pub fn render_bodystructure(meta: &MessageMeta, out: &mut Vec<u8>, extensible: bool, utf8: bool) {
    let opts = Opts { extensible, utf8 };
    out.push(b'(');
    body(&meta.root, out, opts);
    out.push(b')');
}

#[derive(Clone, Copy)]
struct Opts {
    extensible: bool,
    utf8: bool,
}

fn envelope(env: &Envelope, out: &mut Vec<u8>, utf8: bool) {
    nstring_nolf(out, env.date.as_deref(), utf8);
    out.push(b' ');
    match &env.subject {
        Some(s) => string_for_humans(out, s, utf8),
        None => nil(out),
    }
    for list in [
        &env.from[..],
        env.sender_or_from(),
        env.reply_to_or_from(),
        &env.to,
        &env.cc,
        &env.bcc,
    ] {
        out.push(b' ');
        addresses(list, out, utf8);
    }
    out.push(b' ');
    nstring_nolf(out, env.in_reply_to.as_deref(), utf8);
    out.push(b' ');
    nstring_nolf(out, env.message_id.as_deref(), utf8);
}

fn addresses(list: &[Address], out: &mut Vec<u8>, utf8: bool) {
    if list.is_empty() {
        return nil(out);
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        match &a.name {
            Some(n) => string_for_humans(out, n, utf8),
            None => nil(out),
        }
        out.push(b' ');
        nstring(out, a.adl.as_deref(), utf8);
        out.push(b' ');
        nstring(out, a.mailbox.as_deref(), utf8);
        out.push(b' ');
        nstring(out, a.host.as_deref(), utf8);
        out.push(b')');
    }
    out.push(b')');
}

fn body(part: &Part, out: &mut Vec<u8>, opts: Opts) {
    match &part.body {
        Body::Multipart(children) => multipart(part, children, out, opts),
        _ => single(part, out, opts),
    }
}

fn multipart(part: &Part, children: &[Part], out: &mut Vec<u8>, opts: Opts) {
    if children.is_empty() {
        out.extend_from_slice(if opts.extensible {
            EMPTY_BODYSTRUCTURE
        } else {
            EMPTY_BODY
        });
    }
    for child in children {
        out.push(b'(');
        body(child, out, opts);
        out.push(b')');
    }
    out.push(b' ');
    string(out, &part.fields.content_subtype, opts.utf8);
    if !opts.extensible {
        return;
    }
    out.push(b' ');
    params(&part.fields.params, out, false, opts.utf8);
    extension_common(part, out, opts.utf8);
}

fn single(part: &Part, out: &mut Vec<u8>, opts: Opts) {
    let f = &part.fields;
    let utf8 = opts.utf8;
    let text = match (&part.body, &f.content_type) {
        (Body::Message(..), _) => {
            out.extend_from_slice(b"\"message\" \"rfc822\"");
            false
        }
        (Body::Truncated, _) => {
            out.extend_from_slice(b"\"application\" \"octet-stream\"");
            false
        }
        (_, None) => {
            out.extend_from_slice(b"\"text\" \"plain\"");
            true
        }
        (_, Some(t)) => {
            string(out, t, utf8);
            out.push(b' ');
            string(out, &f.content_subtype, utf8);
            t.eq_ignore_ascii_case(b"text")
        }
    };
    out.push(b' ');
    params(&f.params, out, text, utf8);
    out.push(b' ');
    nstring_nolf(out, f.id.as_deref(), utf8);
    out.push(b' ');
    nstring_nolf(out, f.description.as_deref(), utf8);
    out.push(b' ');
    match &f.encoding {
        Some(e) => string(out, e, utf8),
        None => out.extend_from_slice(b"\"7bit\""),
    }
    out.push(b' ');
    out.extend_from_slice(part.size().to_string().as_bytes());
    if text {
        out.push(b' ');
        out.extend_from_slice(part.lines.to_string().as_bytes());
    } else if let Body::Message(env, child) = &part.body {
        out.extend_from_slice(b" (");
        envelope(env, out, utf8);
        out.extend_from_slice(b") (");
        body(child, out, opts);
        out.extend_from_slice(b") ");
        out.extend_from_slice(part.lines.to_string().as_bytes());
    }
    if !opts.extensible {
        return;
    }
    out.push(b' ');
    nstring_nolf(out, f.md5.as_deref(), utf8);
    extension_common(part, out, utf8);
}

/// ` disposition language location`
fn extension_common(part: &Part, out: &mut Vec<u8>, utf8: bool) {
    let f = &part.fields;
    out.push(b' ');
    match &f.disposition {
        None => nil(out),
        Some(d) => {
            out.push(b'(');
            string(out, d, utf8);
            out.push(b' ');
            params(&f.disposition_params, out, false, utf8);
            out.push(b')');
        }
    }
    out.push(b' ');
    if f.language.is_empty() {
        nil(out);
    } else {
        out.push(b'(');
        for (i, lang) in f.language.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            string(out, lang, utf8);
        }
        out.push(b')');
    }
    out.push(b' ');
    nstring_nolf(out, f.location.as_deref(), utf8);
}

/// `body-fld-param`; a text part gets `charset` `us-ascii` when it names none.
fn params(list: &[Param], out: &mut Vec<u8>, default_charset: bool, utf8: bool) {
    if list.is_empty() && !default_charset {
        return nil(out);
    }
    out.push(b'(');
    let mut seen_charset = false;
    for (i, p) in list.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        if utf8 && p.name.ends_with(b"*") {
            let (name, value) = p.decoded();
            seen_charset |= name.eq_ignore_ascii_case("charset");
            string(out, name.as_bytes(), utf8);
            out.push(b' ');
            string(out, value.as_bytes(), utf8);
        } else {
            seen_charset |= p.name.eq_ignore_ascii_case(b"charset");
            string(out, &p.name, utf8);
            out.push(b' ');
            string(out, &p.value, utf8);
        }
    }
    if default_charset && !seen_charset {
        if !list.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\"charset\" \"us-ascii\"");
    }
    out.push(b')');
}
