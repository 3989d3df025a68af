//! `vswitchctl`: parses the command line, checks what can be checked locally, sends the request
//! to the daemon and prints its result as a table or, with `--json`, as the daemon sent it.
//!
//! Exit status: 0 on success; 1 when the daemon, the socket or a file failed; 2 for a command
//! line that is wrong (clap's syntax errors and our own checks alike). Every failure we report is
//! one line `error: ...` on stderr.

mod args;
mod capture;
mod check;
mod endpoint;
mod nat;
mod plan;
mod render;
mod service;
mod table;
mod top;

use args::Cli;
use clap::Parser;
use control::client::{self, Client};
use control::proto::{ConfigDoc, ErrorBody};
use plan::{Call, Show};
use serde_json::Value;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The command line asks for something wrong; nothing was sent.
    Usage(String),
    /// The daemon, the socket or a file failed.
    Failed(String),
    /// Whoever read our output went away (`vswitchctl ... | head`): stop quietly.
    Closed,
}

impl From<ErrorBody> for CliError {
    fn from(e: ErrorBody) -> Self {
        CliError::Failed(e.message)
    }
}

/// Runs `vswitchctl` with the process's arguments.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let (message, code) = match run(&cli) {
        Ok(()) | Err(CliError::Closed) => return ExitCode::SUCCESS,
        Err(CliError::Usage(m)) => (m, 2),
        Err(CliError::Failed(m)) => (m, 1),
    };
    // Nothing more can be done if stderr itself is gone.
    let _ = writeln!(io::stderr().lock(), "error: {}", one_line(&message));
    ExitCode::from(code)
}

fn run(cli: &Cli) -> Result<(), CliError> {
    let call = plan::plan(&cli.command)?;
    let mut client = Client::connect(&client::socket_path(cli.socket.as_deref()))?;
    if let Show::Capture(out) = &call.show {
        return capture::run(&mut client, &call, out.as_deref());
    }
    if let Show::Top { once } = call.show {
        return top::run(&mut client, &call, once, cli.json);
    }
    if call.cmd == control::proto::cmd::FDB_LS {
        let result = fdb_pages(&mut client, &call)?;
        return emit(&output(&call, result, cli.json)?);
    }
    let Some(every) = call.every else {
        let result = client.call(call.cmd, call.args.clone())?;
        return emit(&output(&call, result, cli.json)?);
    };
    // Repaint in place on a terminal; elsewhere, append frames separated by a blank line.
    let repaint = !cli.json && io::stdout().is_terminal();
    let mut first = true;
    loop {
        let result = client.call(call.cmd, call.args.clone())?;
        let text = output(&call, result, cli.json)?;
        let frame = if repaint {
            let secs = every.as_secs();
            format!("\x1b[H\x1b[2Jevery {secs}s, Ctrl-C to stop\n\n{text}")
        } else if first || cli.json {
            text
        } else {
            format!("\n{text}")
        };
        emit(&frame)?;
        first = false;
        std::thread::sleep(every);
    }
}

/// Entries asked for per `fdb.ls` page.
const FDB_PAGE: u64 = 1024;

/// The MAC table page by page (each reply stays small however large the table), up to the
/// `limit` in the call's arguments, as one array.
fn fdb_pages(client: &mut Client, call: &Call) -> Result<Value, CliError> {
    let total = call.args.get("limit").and_then(Value::as_u64);
    let mut all: Vec<Value> = Vec::new();
    let mut after: Option<Value> = None;
    // Each page moves the cursor forward; the bound only guards against a daemon that errs.
    for _ in 0..1_000_000 {
        let want = total.map_or(FDB_PAGE, |t| {
            t.saturating_sub(all.len() as u64).min(FDB_PAGE)
        });
        if want == 0 {
            break;
        }
        let mut args = call.args.clone();
        args["limit"] = want.into();
        if let Some(a) = &after {
            args["after"] = a.clone();
        }
        let Value::Array(page) = client.call(call.cmd, args)? else {
            return Err(CliError::Failed(
                "malformed reply to fdb.ls: not a list".into(),
            ));
        };
        let got = page.len() as u64;
        after = page
            .last()
            .map(|e| serde_json::json!({"network": e["network"], "mac": e["mac"]}));
        all.extend(page);
        if got < want {
            break;
        }
    }
    Ok(Value::Array(all))
}

/// What to print for a result (possibly nothing), after writing any file the command asks for.
fn output(call: &Call, result: Value, json: bool) -> Result<String, CliError> {
    if let Show::Export(Some(path)) = &call.show {
        let doc: ConfigDoc = render::decode(call.cmd, result)?;
        // Owner-only: the document may hold key material (--include-secrets).
        let write = |data: String| -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(data.as_bytes())
        };
        write(render::pretty(&doc)?)
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
        return Ok(if json {
            String::new()
        } else {
            format!("configuration written to {}\n", path.display())
        });
    }
    if !json {
        return render::human(call.cmd, &call.show, result);
    }
    if result.is_null() {
        return Ok(String::new());
    }
    render::pretty(&result)
}

/// Writes to stdout; a closed pipe ends the command quietly.
fn emit(text: &str) -> Result<(), CliError> {
    if text.is_empty() {
        return Ok(());
    }
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == io::ErrorKind::BrokenPipe {
                CliError::Closed
            } else {
                CliError::Failed(format!("cannot write to stdout: {e}"))
            }
        })
}

/// Joins a message's lines, so that an error is always one line.
fn one_line(message: &str) -> String {
    let parts: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn call(show: Show) -> Call {
        Call {
            cmd: "x",
            args: json!({}),
            show,
            every: None::<Duration>,
        }
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(one_line("a\n  b\r\n\nc "), "a b c");
        assert_eq!(one_line("plain"), "plain");
    }

    #[test]
    fn json_mode_prints_the_result_as_sent_and_nothing_for_null() {
        let result = json!({"b": 1, "a": [true]});
        let text = output(&call(Show::Status), result.clone(), true).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), result);
        assert!(
            text.ends_with("}\n") && text.contains("\n  "),
            "pretty: {text}"
        );
        assert_eq!(
            output(&call(Show::Done("gone".into())), Value::Null, true).unwrap(),
            ""
        );
        assert_eq!(
            output(&call(Show::Done("gone".into())), Value::Null, false).unwrap(),
            "gone\n"
        );
    }

    #[test]
    fn export_to_a_file_writes_the_document() {
        let path =
            std::env::temp_dir().join(format!("vswitchctl-export-{}.json", std::process::id()));
        let doc =
            json!({"version": 1, "networks": [{"name": "blue", "vni": 7}], "ports": [], "fdb": []});
        let text = output(&call(Show::Export(Some(path.clone()))), doc.clone(), false).unwrap();
        assert_eq!(
            text,
            format!("configuration written to {}\n", path.display())
        );
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written, doc);
        let _ = std::fs::remove_file(&path);
    }
}
