//! The control protocol's decoding: arbitrary request lines through the request parser and every
//! command's argument types, and the user-value parsers. Nothing may panic.

use control::proto::*;

fn args<T: serde::de::DeserializeOwned>(v: &serde_json::Value) {
    let _ = serde_json::from_value::<T>(v.clone());
}

/// One input: must not panic; the checks above hold.
pub fn run(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = control::text::parse_mac(s);
        let _ = control::text::check_name("port", s, 15);
        let _ = vswitch::daemon::parse_cidr(s);
        let _ = dataplane::parse_core_list(s);
    }
    let Ok(req) = serde_json::from_slice::<Request>(data) else {
        return;
    };
    let a = &req.args;
    args::<NameArgs>(a);
    args::<NetworkSpec>(a);
    args::<PortSpec>(a);
    args::<StaticFdb>(a);
    args::<FdbLsArgs>(a);
    args::<FdbRmArgs>(a);
    args::<StatsArgs>(a);
    args::<ConfigDoc>(a);
    // Replies round-trip.
    let reply = Reply::err(
        req.id,
        ErrorBody::new(ErrorCode::BadRequest, req.cmd.clone()),
    );
    let line = serde_json::to_string(&reply).unwrap();
    let back: Reply = serde_json::from_str(&line).unwrap();
    assert_eq!(back.id, req.id);
}
