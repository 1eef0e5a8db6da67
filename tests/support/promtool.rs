//! `promtool check metrics` on an exposition: the one parser every test trusts as Prometheus's.
//! promtool is a test prerequisite (`.ci/run` installs Debian's `prometheus` package), so its
//! absence fails the test instead of skipping it. Callers decide which remarks they accept.

use std::io::Write;
use std::process::{Command, Stdio};

/// What promtool printed (stdout then stderr) for `text`. A parse error reads
/// "error while linting"; other lines are its naming lint.
pub fn check_metrics(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required for this test: apt-get install prometheus");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
