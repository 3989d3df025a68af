//! `vswitchctl`: the command line for `vswitchd`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
