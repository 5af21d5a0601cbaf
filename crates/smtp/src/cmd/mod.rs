//! Command handlers, one file per group. Each handler names the RFC section it
//! implements, writes its own reply, and runs only after the state gate allowed the
//! command.

pub(crate) mod auth;
pub(crate) mod data;
pub(crate) mod hello;
pub(crate) mod mail;
pub(crate) mod misc;
pub(crate) mod rcpt;
