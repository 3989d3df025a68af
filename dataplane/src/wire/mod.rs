//! Checked views over packet bytes.
