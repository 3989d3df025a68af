//! etcd v3 through its JSON gateway (etcd 3.4: `/v3/...` over plain HTTP on the client port):
//! keys and values in base64, 64-bit integers as strings. No protoc, no gRPC, no async runtime.
//! Every call tries the endpoints in turn, starting with the one that answered last.

use super::base64;
use super::http;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// One key and its value as etcd holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The key (our keys are text; others are skipped by the caller).
    pub key: String,
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The revision of its last change.
    pub mod_revision: i64,
    /// The lease it is attached to (0: none).
    pub lease: i64,
}

/// What happened to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Created or changed.
    Put(Kv),
    /// Deleted (or its lease expired); the key and the revision of the deletion.
    Delete(String, i64),
}

/// One message of a watch stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchMsg {
    /// The store's revision when the message was sent.
    pub revision: i64,
    /// Events, in revision order.
    pub events: Vec<Event>,
    /// Non-zero: the watch's start revision was compacted away; re-list.
    pub compact_revision: i64,
    /// The server ended the watch.
    pub canceled: bool,
}

/// A client for a set of etcd endpoints.
#[derive(Debug, Clone)]
pub struct Etcd {
    endpoints: Vec<SocketAddr>,
    current: usize,
    timeout: Duration,
}

/// A transaction condition: `key` does not exist.
pub fn cmp_absent(key: &str) -> Value {
    json!({
        "key": base64::encode(key.as_bytes()),
        "result": "EQUAL",
        "target": "CREATE",
        "create_revision": "0",
    })
}

/// A transaction condition: `key` holds `value`.
pub fn cmp_value(key: &str, value: &[u8]) -> Value {
    json!({
        "key": base64::encode(key.as_bytes()),
        "result": "EQUAL",
        "target": "VALUE",
        "value": base64::encode(value),
    })
}

/// A transaction operation: put.
pub fn op_put(key: &str, value: &[u8], lease: i64) -> Value {
    json!({"request_put": {
        "key": base64::encode(key.as_bytes()),
        "value": base64::encode(value),
        "lease": lease.to_string(),
    }})
}

/// A transaction operation: delete.
pub fn op_delete(key: &str) -> Value {
    json!({"request_delete_range": {"key": base64::encode(key.as_bytes())}})
}

/// `[prefix, end)`: the range of every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn b64(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => base64::decode(s),
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}

fn kv_of(v: &Value) -> Option<Kv> {
    let key = String::from_utf8(b64(&v["key"])?).ok()?;
    Some(Kv {
        key,
        value: b64(&v["value"])?,
        mod_revision: int(&v["mod_revision"]),
        lease: int(&v["lease"]),
    })
}

/// Parses one watch stream message (`{"result": {...}}` or `{"error": {...}}`).
pub fn parse_watch(msg: &Value) -> Result<WatchMsg, String> {
    if let Some(e) = msg.get("error") {
        return Err(format!(
            "watch error: {}",
            e["message"].as_str().unwrap_or("?")
        ));
    }
    let r = msg.get("result").ok_or("watch message without result")?;
    let mut out = WatchMsg {
        revision: int(&r["header"]["revision"]),
        compact_revision: int(&r["compact_revision"]),
        canceled: r["canceled"].as_bool().unwrap_or(false),
        events: Vec::new(),
    };
    if let Some(evs) = r["events"].as_array() {
        for e in evs {
            let kv = &e["kv"];
            // PUT is the enum's zero value: the gateway may leave it out.
            let delete = e["type"].as_str() == Some("DELETE");
            if delete {
                let Some(key) = b64(&kv["key"]).and_then(|k| String::from_utf8(k).ok()) else {
                    continue;
                };
                out.events
                    .push(Event::Delete(key, int(&kv["mod_revision"])));
            } else if let Some(kv) = kv_of(kv) {
                out.events.push(Event::Put(kv));
            }
        }
    }
    Ok(out)
}

/// A watch stream: messages as the server sends them.
pub struct Watch {
    reply: http::Reply,
    buf: Vec<u8>,
}

impl Watch {
    /// A handle that ends the stream from another thread (`shutdown`), waking its reader.
    pub fn closer(&self) -> Option<std::net::TcpStream> {
        self.reply.closer().ok()
    }

    /// The next message; waits at most the read timeout given at `watch` (an error then: the
    /// caller treats a silent stream as a lost store, which progress notifications prevent).
    pub fn next_msg(&mut self) -> Result<WatchMsg, String> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let v: Value = serde_json::from_slice(&line)
                    .map_err(|e| format!("watch stream: bad JSON: {e}"))?;
                return parse_watch(&v);
            }
            // A message not ended by a newline may still be whole: try it as JSON.
            if !self.buf.is_empty() {
                if let Ok(v) = serde_json::from_slice::<Value>(&self.buf) {
                    self.buf.clear();
                    return parse_watch(&v);
                }
            }
            match self.reply.next_part() {
                Ok(Some(part)) => {
                    if self.buf.len() + part.len() > http::MAX_BODY {
                        return Err("watch message too large".into());
                    }
                    self.buf.extend_from_slice(&part);
                }
                Ok(None) => return Err("the store closed the watch".into()),
                Err(e) => return Err(format!("watch stream: {e}")),
            }
        }
    }
}

impl Etcd {
    /// A client for `endpoints` (tried in turn); `timeout` bounds each request.
    pub fn new(endpoints: Vec<SocketAddr>, timeout: Duration) -> Etcd {
        Etcd {
            endpoints,
            current: 0,
            timeout,
        }
    }

    /// The endpoint that answered last.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoints.get(self.current).copied()
    }

    /// One gateway call: JSON in, JSON out; tries each endpoint once.
    pub fn call(&mut self, path: &str, body: &Value) -> Result<Value, String> {
        let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let mut last = String::from("no store endpoint given");
        for i in 0..self.endpoints.len() {
            let at = (self.current + i) % self.endpoints.len();
            let Some(&addr) = self.endpoints.get(at) else {
                continue;
            };
            let r =
                http::post(addr, path, &body, self.timeout).and_then(|r| Ok((r.status, r.body()?)));
            match r {
                Ok((status, bytes)) => {
                    self.current = at;
                    let v: Value = serde_json::from_slice(&bytes)
                        .map_err(|e| format!("{addr}{path}: bad JSON reply: {e}"))?;
                    if status != 200 {
                        let msg = v["message"].as_str().or(v["error"].as_str()).unwrap_or("");
                        return Err(format!("{addr}{path}: HTTP {status}: {msg:.200}"));
                    }
                    return Ok(v);
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(last)
    }

    /// Keys from `key` up to `end` at revision `rev` (0: now), at most `limit` (0: all);
    /// with the store's revision and whether more remain.
    pub fn range(
        &mut self,
        key: &[u8],
        end: &[u8],
        rev: i64,
        limit: i64,
    ) -> Result<(Vec<Kv>, i64, bool), String> {
        let v = self.call(
            "/v3/kv/range",
            &json!({
                "key": base64::encode(key),
                "range_end": base64::encode(end),
                "revision": rev.to_string(),
                "limit": limit.to_string(),
            }),
        )?;
        let kvs = v["kvs"]
            .as_array()
            .map(|a| a.iter().filter_map(kv_of).collect())
            .unwrap_or_default();
        Ok((
            kvs,
            int(&v["header"]["revision"]),
            v["more"].as_bool().unwrap_or(false),
        ))
    }

    /// Every key under `prefix`, read in pages of `page` at one revision; with that revision.
    pub fn list(&mut self, prefix: &str, page: i64) -> Result<(Vec<Kv>, i64), String> {
        let end = prefix_end(prefix.as_bytes());
        let mut from = prefix.as_bytes().to_vec();
        let mut all = Vec::new();
        let mut rev = 0;
        loop {
            let (kvs, r, more) = self.range(&from, &end, rev, page)?;
            if rev == 0 {
                rev = r;
            }
            let last = kvs.last().map(|k| k.key.clone());
            all.extend(kvs);
            match last {
                Some(k) if more => {
                    from = k.into_bytes();
                    from.push(0);
                }
                _ => return Ok((all, rev)),
            }
        }
    }

    /// Puts `key` = `value`, attached to `lease` (0: none); the new revision.
    pub fn put(&mut self, key: &str, value: &[u8], lease: i64) -> Result<i64, String> {
        let v = self.call(
            "/v3/kv/put",
            &json!({
                "key": base64::encode(key.as_bytes()),
                "value": base64::encode(value),
                "lease": lease.to_string(),
            }),
        )?;
        Ok(int(&v["header"]["revision"]))
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &str) -> Result<(), String> {
        self.call(
            "/v3/kv/deleterange",
            &json!({"key": base64::encode(key.as_bytes())}),
        )
        .map(drop)
    }

    /// Puts each of `puts` (key, value, lease) only if none of `absent` exists; whether it did.
    pub fn put_if_absent(
        &mut self,
        absent: &[&str],
        puts: &[(&str, &[u8], i64)],
    ) -> Result<bool, String> {
        let compare: Vec<Value> = absent.iter().map(|k| cmp_absent(k)).collect();
        let success: Vec<Value> = puts.iter().map(|(k, v, l)| op_put(k, v, *l)).collect();
        self.txn(compare, success)
    }

    /// A transaction: `success` runs if every `compare` holds; whether it did.
    pub fn txn(&mut self, compare: Vec<Value>, success: Vec<Value>) -> Result<bool, String> {
        let v = self.call(
            "/v3/kv/txn",
            &json!({"compare": compare, "success": success}),
        )?;
        Ok(v["succeeded"].as_bool().unwrap_or(false))
    }

    /// A new lease of `ttl` seconds; its id.
    pub fn grant(&mut self, ttl: u64) -> Result<i64, String> {
        let v = self.call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))?;
        let id = int(&v["ID"]);
        if id == 0 {
            return Err(format!(
                "lease grant: no lease id in the reply: {}",
                v.to_string().chars().take(200).collect::<String>()
            ));
        }
        Ok(id)
    }

    /// Renews `lease`; its remaining TTL (0: it had expired, the keys on it are gone).
    pub fn keepalive(&mut self, lease: i64) -> Result<i64, String> {
        let v = self.call("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))?;
        Ok(int(&v["result"]["TTL"]))
    }

    /// Ends `lease` now: its keys go at once (a clean stop).
    pub fn revoke(&mut self, lease: i64) -> Result<(), String> {
        self.call("/v3/lease/revoke", &json!({"ID": lease.to_string()}))
            .map(drop)
    }

    /// Watches every key under `prefix` from revision `from`, with progress notifications (so a
    /// quiet store still says its revision); `read_timeout` bounds the wait for each message.
    pub fn watch(
        &mut self,
        prefix: &str,
        from: i64,
        read_timeout: Duration,
    ) -> Result<Watch, String> {
        let body = serde_json::to_vec(&json!({"create_request": {
            "key": base64::encode(prefix.as_bytes()),
            "range_end": base64::encode(&prefix_end(prefix.as_bytes())),
            "start_revision": from.to_string(),
            "progress_notify": true,
        }}))
        .map_err(|e| e.to_string())?;
        let mut last = String::from("no store endpoint given");
        for i in 0..self.endpoints.len() {
            let at = (self.current + i) % self.endpoints.len();
            let Some(&addr) = self.endpoints.get(at) else {
                continue;
            };
            match http::post(addr, "/v3/watch", &body, self.timeout) {
                Ok(reply) if reply.status == 200 => {
                    self.current = at;
                    reply
                        .set_read_timeout(Some(read_timeout))
                        .map_err(|e| e.to_string())?;
                    return Ok(Watch {
                        reply,
                        buf: Vec::new(),
                    });
                }
                Ok(reply) => last = format!("{addr}/v3/watch: HTTP {}", reply.status),
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"/vswitch/"), b"/vswitch0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }

    #[test]
    fn watch_messages_parse_with_and_without_defaults() {
        let k = base64::encode(b"/p/hosts/a");
        let v = base64::encode(b"{}");
        let msg = json!({"result": {"header": {"revision": "42"}, "events": [
            {"kv": {"key": k, "value": v, "mod_revision": "41", "lease": "7"}},
            {"type": "DELETE", "kv": {"key": k, "mod_revision": "42"}},
            {"kv": {"key": "!!", "value": v}},
        ]}});
        let w = parse_watch(&msg).unwrap();
        assert_eq!(w.revision, 42);
        assert_eq!(w.events.len(), 2, "the undecodable key is skipped");
        assert_eq!(
            w.events[0],
            Event::Put(Kv {
                key: "/p/hosts/a".into(),
                value: b"{}".to_vec(),
                mod_revision: 41,
                lease: 7
            })
        );
        assert_eq!(w.events[1], Event::Delete("/p/hosts/a".into(), 42));
        let c = parse_watch(&json!({"result": {"header": {"revision": "9"}, "compact_revision": "5", "canceled": true}})).unwrap();
        assert_eq!((c.compact_revision, c.canceled), (5, true));
        assert!(parse_watch(&json!({"error": {"message": "x"}})).is_err());
        assert!(parse_watch(&json!([])).is_err());
    }
}
