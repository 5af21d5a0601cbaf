//! Command handlers, one file per group: logins ([`auth`]), the maildrop commands
//! ([`transaction`]) and the rest ([`misc`]). Each handler names the RFC section it
//! implements; the state gate has already allowed the command when it runs.

pub(crate) mod auth;
pub(crate) mod misc;
pub(crate) mod transaction;
