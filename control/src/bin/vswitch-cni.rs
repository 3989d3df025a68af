//! `vswitch-cni`: a CNI 1.0 plugin that puts containers on vswitchd's networks (see
//! `control::engine::cni`). Install it in the runtime's CNI plugin directory under the name
//! the configuration's `type` gives (e.g. /usr/lib/cni/vswitch).

use control::engine::cni::{run, Env};
use std::io::Read;

fn main() {
    let env = Env::from_process();
    let mut stdin = Vec::new();
    if env.command != "VERSION" {
        let _ = std::io::stdin().take(16 << 20).read_to_end(&mut stdin);
    }
    match run(&env, &stdin) {
        Ok(Some(v)) => println!("{v}"),
        Ok(None) => {}
        Err((version, e)) => {
            println!("{}", e.to_json(&version));
            std::process::exit(1);
        }
    }
}
