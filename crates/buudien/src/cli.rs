//! The command tree. Names and flags here are a contract with users and scripts.

use crate::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// sysexits(3) codes used by the commands.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// `check` found problems in the store (listed on stdout).
    pub const PROBLEMS: u8 = 1;
    /// Wrong usage or a request the store refuses.
    pub const USAGE: u8 = 64;
    /// The input is not a message or is too big.
    pub const DATAERR: u8 = 65;
    /// Unknown recipient or account.
    pub const NOUSER: u8 = 67;
    /// Internal error.
    pub const SOFTWARE: u8 = 70;
    /// Configuration error.
    pub const CONFIG: u8 = 78;
    /// Temporary failure: store busy, disk full, quota.
    pub const TEMPFAIL: u8 = 75;
}

/// A command's failure: one line for stderr and an exit code.
#[derive(Debug)]
pub struct CliError {
    /// The line printed after `buudien: `.
    pub message: String,
    /// The process exit code.
    pub code: u8,
}

impl CliError {
    /// An error with an explicit exit code.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code,
        }
    }
    /// Bad usage (64).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }
    /// Internal failure (70).
    pub fn software(message: impl Into<String>) -> Self {
        Self::new(exit::SOFTWARE, message)
    }
    /// Configuration error (78).
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(exit::CONFIG, message)
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<buudien_store::StoreError> for CliError {
    fn from(e: buudien_store::StoreError) -> Self {
        use buudien_store::StoreError as E;
        let code = match &e {
            E::NotFound(_) => exit::NOUSER,
            E::Exists(_) | E::Refused(_) => exit::USAGE,
            _ if e.is_temporary() => exit::TEMPFAIL,
            _ => exit::SOFTWARE,
        };
        CliError::new(code, e.to_string())
    }
}

/// buudien: a whole mail server in one binary.
#[derive(Debug, Parser)]
#[command(name = "buudien", version, about, propagate_version = true)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "BUUDIEN_CONFIG",
        default_value = "buudien.toml",
        value_name = "FILE"
    )]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every listener in the config until SIGTERM/SIGINT (SIGHUP reloads TLS).
    Serve,
    /// Set up a fresh machine for EMAIL (config, data dir, certificate, domain,
    /// account) and serve.
    Quickstart {
        /// The first account's address.
        email: String,
        /// Only set up; do not serve.
        #[arg(long)]
        no_serve: bool,
    },
    /// Local domains.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Accounts.
    #[command(subcommand)]
    User(UserCmd),
    /// Aliases (addresses that deliver to other addresses; they do not log in).
    #[command(subcommand)]
    Alias(AliasCmd),
    /// The outbound queue.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Verify every stored message file against the index: exists, indexed size,
    /// hash (BLAKE3, or SHA-256 for older messages); also orphan files, reference counts and the text index of SEARCH.
    /// One line per problem; exit 0
    /// clean (damage quarantined earlier is listed but does not fail), 1 problems
    /// found. Safe beside a running server.
    Check {
        /// Move damaged message files to quarantine/ in the data directory and
        /// record them (reads of them then fail at once; the next check lists them as
        /// quarantined); rebuild a damaged text index.
        #[arg(long)]
        quarantine: bool,
    },
    /// Bring the store's schema up to date and exit (SQLite in data_dir, or the
    /// PostgreSQL database of `[store] url`). `serve` and every command do this too;
    /// run it once before starting several nodes, or after an upgrade.
    Migrate,
    /// Deliver a message from stdin to local recipients (exit 0 once durable; 67
    /// unknown recipient; 65 not a message or too big; 75 try again later).
    Deliver {
        /// The envelope sender, recorded as Return-Path.
        #[arg(long, short = 'f', value_name = "ADDR")]
        from: Option<String>,
        /// Recipients.
        #[arg(required = true, value_name = "RCPT")]
        recipients: Vec<String>,
    },
}

/// `buudien domain …`
#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// Add a local domain.
    Add {
        /// The domain.
        domain: String,
    },
    /// List the local domains.
    List,
    /// Remove a local domain without accounts or aliases.
    Remove {
        /// The domain.
        domain: String,
    },
}

/// `buudien user …`
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add an account (the domain must be local: see `domain add`).
    Add {
        /// The address, which is also the login name.
        email: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Storage quota, e.g. 500M or 2G.
        #[arg(long, value_name = "SIZE")]
        quota: Option<String>,
        /// Most messages the account may hold.
        #[arg(long, value_name = "N")]
        quota_messages: Option<u64>,
    },
    /// Change a password (or, with --apop, the separate APOP secret).
    Passwd {
        /// The account.
        email: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Set the APOP secret instead of the login password.
        #[arg(long)]
        apop: bool,
    },
    /// Change an account's quota ("none" for unlimited).
    Quota {
        /// The account.
        email: String,
        /// Bytes, e.g. 500M, or "none".
        size: String,
        /// Most messages, if limited.
        #[arg(long, value_name = "N")]
        messages: Option<u64>,
    },
    /// List accounts with their usage.
    List,
    /// Remove an account and all its mail.
    Remove {
        /// The account.
        email: String,
    },
}

/// `buudien queue …`
#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// List queued messages with each recipient's state and next attempt.
    List,
    /// Make pending recipients due now (one message, or all).
    Flush {
        /// The message id (from `queue list`).
        id: Option<i64>,
    },
    /// Remove a message from the queue without a report.
    Remove {
        /// The message id.
        id: i64,
    },
    /// Fail a message's pending recipients now; the sender gets a delivery report.
    Bounce {
        /// The message id.
        id: i64,
    },
}

/// `buudien alias …`
#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// Add (or replace) an alias.
    Add {
        /// The alias address (in a local domain).
        address: String,
        /// Where it delivers.
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// List aliases.
    List,
    /// Remove an alias.
    Remove {
        /// The alias address.
        address: String,
    },
}

/// Parses the command line, runs the command, prints a failure as one line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(
        cli.command,
        Command::Serve | Command::Quickstart { .. }
    ));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("buudien: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

fn init_logging(server: bool) {
    let default = if server { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BUUDIEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn runtime(multi: bool) -> Result<tokio::runtime::Runtime, CliError> {
    let mut b = if multi {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all()
        .build()
        .map_err(|e| CliError::software(format!("cannot start the runtime: {e}")))
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve => {
            let cfg = Config::load(&cli.config).map_err(CliError::config)?;
            runtime(true)?.block_on(crate::serve::serve(cfg))
        }
        Command::Quickstart { email, no_serve } => {
            let cfg = crate::quickstart::setup(&cli.config, &email)?;
            if no_serve {
                return Ok(());
            }
            runtime(true)?.block_on(crate::serve::serve(cfg))
        }
        Command::Domain(cmd) => {
            let cfg = Config::load(&cli.config).map_err(CliError::config)?;
            runtime(false)?.block_on(crate::admin::domain(&cfg, cmd))
        }
        Command::User(cmd) => {
            let cfg = Config::load(&cli.config).map_err(CliError::config)?;
            runtime(false)?.block_on(crate::admin::user(&cfg, cmd))
        }
        Command::Alias(cmd) => {
            let cfg = Config::load(&cli.config).map_err(CliError::config)?;
            runtime(false)?.block_on(crate::admin::alias(&cfg, cmd))
        }
        Command::Queue(cmd) => {
            let cfg = Config::load(&cli.config).map_err(CliError::config)?;
            runtime(false)?.block_on(crate::queue_cmd::queue(&cfg, cmd))
        }
        Command::Check { quarantine } => {
            let cfg = Config::load(&cli.config).map_err(CliError::config)?;
            crate::check_cmd::run(&cfg, quarantine)
        }
        Command::Migrate => {
            let cfg = Config::load(&cli.config).map_err(CliError::config)?;
            runtime(false)?.block_on(crate::store::migrate(&cfg))
        }
        Command::Deliver { from, recipients } => {
            let cfg = Config::load(&cli.config).map_err(CliError::config)?;
            runtime(false)?.block_on(crate::deliver::run(&cfg, from.as_deref(), &recipients))
        }
    }
}
