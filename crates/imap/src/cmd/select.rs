//! SELECT, EXAMINE (RFC 9051 §6.3.2, §6.3.3) and the change report at NOOP.

use crate::reply::*;
use crate::selected::Selected;
use crate::session::Session;
use buudien_imap_proto::response::{self, ListItem};
use buudien_imap_proto::{Mailbox as Name, Tag};
use buudien_store::MailboxStore;

impl<S: MailboxStore> Session<'_, S> {
    /// SELECT / EXAMINE (RFC 9051 §6.3.2, §6.3.3).
    pub(crate) async fn select(
        &mut self,
        tag: &Tag,
        mailbox: &Name,
        read_only: bool,
        out: &mut Vec<u8>,
    ) {
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
                self.text_mode(),
                false,
            );
        }
        self.selected = Some(sel);
        let code = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        let cmd = if read_only { "EXAMINE" } else { "SELECT" };
        ok(out, tag, &format!("[{code}] {cmd} completed"));
    }

    /// Reports what changed in the selected mailbox since the snapshot.
    pub(crate) async fn sync(&mut self, out: &mut Vec<u8>) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        match self.shared.store.messages(sel.id).await {
            Ok(now) => sel.sync(now, out),
            Err(e) => tracing::warn!(error = %e, "mailbox refresh failed"),
        }
    }
}
