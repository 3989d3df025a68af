//! A minimal blocking HTTP/1.1 client over `std::net::TcpStream`, enough for etcd's JSON gateway:
//! `POST` with a JSON body to a literal address, replies framed by `Content-Length`, by chunked
//! transfer coding (the gateway streams watches that way) or by the end of the connection.
//!
//! Why our own and not `ureq`: we speak to one kind of server at literal IP:port addresses, with
//! no TLS, no redirects, no cookies, no proxies and no name resolution; what is left is about 150
//! lines that a test checks against a real etcd, against `ureq`'s dependency tree (url, idna and
//! their Unicode tables, log, once_cell, ...) for the same thing. Everything read from the server
//! is bounded (header and body sizes) and a malformed reply is an error, never a panic.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest header block accepted.
const MAX_HEADER: usize = 16 << 10;
/// Largest body (or one chunk of a stream) accepted.
pub const MAX_BODY: usize = 256 << 20;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// How a reply's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// An open reply whose body is read as it comes.
pub struct Reply {
    /// The status code.
    pub status: u16,
    reader: BufReader<TcpStream>,
    framing: Framing,
    done: bool,
}

/// Sends `POST path` with `body` to `addr`; returns the reply with its header read. `timeout`
/// bounds the connect and every read and write (a stream's reader may change it afterwards).
pub fn post(addr: SocketAddr, path: &str, body: &[u8], timeout: Duration) -> io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut req = Vec::with_capacity(head.len() + body.len());
    req.extend_from_slice(head.as_bytes());
    req.extend_from_slice(body);
    s.write_all(&req)?;
    let mut reader = BufReader::new(s);
    let (status, framing) = read_head(&mut reader)?;
    Ok(Reply {
        status,
        reader,
        framing,
        done: false,
    })
}

/// One line (without CRLF) of at most `*budget` bytes, which it lowers.
fn line(r: &mut impl BufRead, budget: &mut usize) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = r.take(*budget as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before the reply",
        ));
    }
    if n > *budget || buf.last() != Some(&b'\n') {
        return Err(bad("reply header too long or cut"));
    }
    *budget -= n;
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| bad("reply header is not text"))
}

fn read_head(r: &mut impl BufRead) -> io::Result<(u16, Framing)> {
    let mut budget = MAX_HEADER;
    let status_line = line(r, &mut budget)?;
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1 reply: {status_line:.60}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("reply has no status code"))?;
    let mut framing = Framing::UntilClose;
    loop {
        let l = line(r, &mut budget)?;
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            return Err(bad("malformed reply header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if value.eq_ignore_ascii_case("chunked") {
                framing = Framing::Chunked;
            } else {
                return Err(bad(format!("unsupported transfer coding {value:.40}")));
            }
        } else if name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
            let n: usize = value.parse().map_err(|_| bad("bad Content-Length"))?;
            if n > MAX_BODY {
                return Err(bad("reply body too large"));
            }
            framing = Framing::Length(n);
        }
    }
    Ok((status, framing))
}

impl Reply {
    /// The whole body (for replies that are not streams).
    pub fn body(mut self) -> io::Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(part) = self.next_part()? {
            if all.len() + part.len() > MAX_BODY {
                return Err(bad("reply body too large"));
            }
            all.extend_from_slice(&part);
        }
        Ok(all)
    }

    /// A handle on the connection, to shut it down from another thread (which ends a read
    /// waiting on it).
    pub fn closer(&self) -> io::Result<TcpStream> {
        self.reader.get_ref().try_clone()
    }

    /// Sets the read timeout of the connection (a watch waits longer than a request).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(t)
    }

    /// The next piece of the body as it arrives (a chunk, or what one read gave); `None` at its
    /// end.
    pub fn next_part(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        match self.framing {
            Framing::Length(n) => {
                let mut buf = vec![0u8; n];
                self.reader.read_exact(&mut buf)?;
                self.done = true;
                Ok(Some(buf))
            }
            Framing::UntilClose => {
                let mut buf = vec![0u8; 64 << 10];
                let n = self.reader.read(&mut buf)?;
                if n == 0 {
                    self.done = true;
                    return Ok(None);
                }
                buf.truncate(n);
                Ok(Some(buf))
            }
            Framing::Chunked => {
                let mut budget = 1024;
                let size_line = line(&mut self.reader, &mut budget)?;
                let hex = size_line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16).map_err(|_| bad("bad chunk size"))?;
                if size > MAX_BODY {
                    return Err(bad("chunk too large"));
                }
                if size == 0 {
                    // Trailers, then the blank line.
                    let mut budget = MAX_HEADER;
                    while !line(&mut self.reader, &mut budget)?.is_empty() {}
                    self.done = true;
                    return Ok(None);
                }
                let mut buf = vec![0u8; size];
                self.reader.read_exact(&mut buf)?;
                let mut crlf = [0u8; 2];
                self.reader.read_exact(&mut crlf)?;
                if &crlf != b"\r\n" {
                    return Err(bad("chunk not followed by CRLF"));
                }
                Ok(Some(buf))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves one connection with `reply` (bytes as given) and returns what the client sent.
    fn serve_once(reply: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = vec![0u8; 4096];
            let n = s.read(&mut got).unwrap();
            got.truncate(n);
            s.write_all(reply).unwrap();
            got
        });
        (addr, h)
    }

    #[test]
    fn reads_length_chunked_and_close_framed_replies() {
        let t = Duration::from_secs(5);
        let (a, h) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        let r = post(a, "/v3/kv/range", b"{}", t).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body().unwrap(), b"hello");
        let sent = String::from_utf8(h.join().unwrap()).unwrap();
        assert!(sent.starts_with("POST /v3/kv/range HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("Content-Length: 2\r\n") && sent.ends_with("\r\n\r\n{}"));

        let (a, _h) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        );
        let mut r = post(a, "/", b"", t).unwrap();
        assert_eq!(r.next_part().unwrap().unwrap(), b"abc");
        assert_eq!(r.next_part().unwrap().unwrap(), b"de");
        assert_eq!(r.next_part().unwrap(), None);

        let (a, _h) = serve_once(b"HTTP/1.0 404 Not Found\r\n\r\nnope");
        let r = post(a, "/", b"", t).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.body().unwrap(), b"nope");
    }

    #[test]
    fn malformed_replies_are_errors() {
        let t = Duration::from_secs(5);
        for reply in [
            &b"SSH-2.0-x\r\n\r\n"[..],
            b"HTTP/1.1 abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            let leaked: &'static [u8] = Box::leak(reply.to_vec().into_boxed_slice());
            let (a, _h) = serve_once(leaked);
            assert!(
                post(a, "/", b"", t).is_err(),
                "{:?}",
                String::from_utf8_lossy(reply)
            );
        }
        let (a, _h) = serve_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert!(post(a, "/", b"", t).unwrap().body().is_err());
        let (a, _h) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        assert!(post(a, "/", b"", t).unwrap().body().is_err());
    }
}
