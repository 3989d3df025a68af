//! `vswitchd demo`.

/// Runs the demo.
pub fn run(_bytes: u64) -> Result<(), String> {
    Err("not yet".into())
}
