//! The `buudien` binary: see the crate's library for everything it does.

fn main() -> std::process::ExitCode {
    buudien::cli::main()
}
