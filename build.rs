//! Build script: records the git revision and the rustc version so that
//! `--version` and `litellm_exporter_build_info` can say exactly what runs.

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let rev = std::env::var("LITELLM_EXPORTER_REVISION")
        .ok()
        .or_else(|| run("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LITELLM_EXPORTER_REVISION={rev}");
    println!("cargo:rustc-env=LITELLM_EXPORTER_RUSTC={rustc_version}");
    println!("cargo:rerun-if-env-changed=LITELLM_EXPORTER_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
}
