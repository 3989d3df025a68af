//! `vswitch-docker-plugin`: Docker's remote network driver for vswitchd (see
//! `control::engine::docker`). Listens on /run/docker/plugins/vswitch.sock (driver name
//! `vswitch`) unless `--plugin-socket` says otherwise; talks to vswitchd on `--socket`.

use control::engine::docker::{serve, Driver};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

const USAGE: &str = "usage: vswitch-docker-plugin [--plugin-socket PATH] [--socket VSWITCHD_SOCKET]
  --plugin-socket  where Docker finds the driver (default /run/docker/plugins/vswitch.sock;
                   the file name without .sock is the driver name: docker network create -d vswitch)
  --socket         vswitchd's control socket (default $VSWITCH_SOCKET or /run/vswitch/vswitchd.sock)";

fn main() {
    let mut plugin = PathBuf::from("/run/docker/plugins/vswitch.sock");
    let mut socket = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--plugin-socket", Some(v)) => plugin = v.into(),
            ("--socket", Some(v)) => socket = Some(PathBuf::from(v)),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let socket = control::client::socket_path(socket.as_deref());
    if let Some(dir) = plugin.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // A socket file left by an earlier run would refuse the bind.
    let _ = std::fs::remove_file(&plugin);
    let listener = match UnixListener::bind(&plugin) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {}: {e}; is another plugin running? pass --plugin-socket",
                plugin.display()
            );
            std::process::exit(1);
        }
    };
    eprintln!(
        "vswitch-docker-plugin: serving {} for vswitchd at {}",
        plugin.display(),
        socket.display()
    );
    serve(listener, Driver { socket });
}
