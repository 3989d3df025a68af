//! A blocking client for the control socket, used by `vswitchctl`, the demo and the tests.

use crate::proto::{ErrorBody, ErrorCode, Reply, Request, MAX_LINE};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A connection to `vswitchd`.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    /// Connects to the daemon's socket; the error says how to mend a missing or refused socket.
    pub fn connect(path: &Path) -> Result<Client, ErrorBody> {
        let stream = UnixStream::connect(path).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    "is vswitchd running? start it, or pass --socket / set VSWITCH_SOCKET"
                }
                std::io::ErrorKind::PermissionDenied => {
                    "run as root or as a member of the daemon's --group"
                }
                _ => "check the socket path",
            };
            ErrorBody::new(
                ErrorCode::System,
                format!("cannot connect to {}: {e}; {hint}", path.display()),
            )
        })?;
        // A daemon that stops answering must not hang scripts forever.
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let writer = stream
            .try_clone()
            .map_err(|e| ErrorBody::new(ErrorCode::System, format!("socket: {e}")))?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
        })
    }

    /// Sends one command and waits for its reply.
    pub fn call(
        &mut self,
        cmd: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, ErrorBody> {
        let id = self.next_id;
        self.next_id += 1;
        let req = Request {
            id,
            cmd: cmd.to_string(),
            args,
        };
        let mut line = serde_json::to_string(&req)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("encode request: {e}")))?;
        line.push('\n');
        if let Err(e) = self.send_raw(line.as_bytes()) {
            // A daemon that refuses the connection says why and closes it, possibly before
            // the request is written: its reply is then still waiting to be read.
            return match self.read_reply() {
                Ok(r) if !r.ok => Err(r.error.unwrap_or(e)),
                _ => Err(e),
            };
        }
        let reply = self.read_reply()?;
        if reply.ok {
            Ok(reply.result.unwrap_or(serde_json::Value::Null))
        } else {
            Err(reply.error.unwrap_or_else(|| {
                ErrorBody::new(
                    ErrorCode::Internal,
                    "daemon sent a failure without an error",
                )
            }))
        }
    }

    /// Sends a typed command and decodes its typed result.
    pub fn call_typed<A: serde::Serialize, R: serde::de::DeserializeOwned>(
        &mut self,
        cmd: &str,
        args: &A,
    ) -> Result<R, ErrorBody> {
        let args = serde_json::to_value(args)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("encode args: {e}")))?;
        let v = self.call(cmd, args)?;
        serde_json::from_value(v).map_err(|e| {
            ErrorBody::new(
                ErrorCode::Internal,
                format!("cannot decode the daemon's reply to {cmd}: {e}; are vswitchctl and vswitchd the same version?"),
            )
        })
    }

    /// Writes raw bytes to the socket (tests use it to send malformed lines).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ErrorBody> {
        self.writer
            .write_all(bytes)
            .map_err(|e| ErrorBody::new(ErrorCode::System, format!("send to daemon: {e}")))
    }

    /// Reads one reply line.
    pub fn read_reply(&mut self) -> Result<Reply, ErrorBody> {
        let mut buf = String::new();
        let n = std::io::Read::take(&mut self.reader, MAX_LINE as u64 * 2)
            .read_line(&mut buf)
            .map_err(|e| ErrorBody::new(ErrorCode::System, format!("read from daemon: {e}")))?;
        if n == 0 {
            return Err(ErrorBody::new(
                ErrorCode::System,
                "the daemon closed the connection; see its log",
            ));
        }
        serde_json::from_str(buf.trim_end()).map_err(|e| {
            ErrorBody::new(
                ErrorCode::Internal,
                format!("malformed reply from daemon: {e}"),
            )
        })
    }
}

/// The socket path: the explicit one, else `$VSWITCH_SOCKET`, else the default.
pub fn socket_path(explicit: Option<&Path>) -> std::path::PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os("VSWITCH_SOCKET") {
        Some(v) if !v.is_empty() => v.into(),
        _ => crate::proto::DEFAULT_SOCKET.into(),
    }
}
