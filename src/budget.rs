//! The memory budget: how many bytes the exporter may use, from `--memory.budget` or, by
//! default, from the memory limit of the container it runs in (cgroup v2 `memory.max`, v1
//! `memory.limit_in_bytes`), and how much of it the label classes may take (the rest is the
//! process itself and the memory of recent rows). The ledger keeps its classes inside that
//! share by folding the excess into "other" series (`ledger::fold`).

use std::path::{Path, PathBuf};

/// The budget's share left to everything but the label classes: the binary, the runtime, the
/// database client's buffers, the remembered rows of the lateness window, the HTTP side.
/// Measured: an idle exporter is about 15 MB resident; the rest is headroom.
const RESERVED_BYTES: u64 = 48 << 20;
/// And an eighth of the budget besides, for the allocator's slack (freed pages not yet returned).
const RESERVED_SHARE: u64 = 8;
/// The process without its ledger (runtime, buffers, HTTP side; an idle exporter is ~15 MB).
const PROCESS_BYTES: u64 = 24 << 20;
/// A remembered row of the lateness window in memory (README: about 250 bytes).
pub const ROW_BYTES: u64 = 250;
/// Below this the classes' share would be nothing.
pub const MIN_BUDGET: u64 = 64 << 20;
/// Of a container's limit, the share taken as the budget by default: the kernel kills at the
/// limit, and what the budget leaves out (page cache of the state file, stacks) needs room.
const LIMIT_SHARE_PERCENT: u64 = 80;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    pub bytes: u64,
    /// Where it came from, for the log and `check-config`.
    pub source: String,
}

impl MemoryBudget {
    /// The bytes the label classes may cost (`FoldRule`'s budget).
    pub fn classes_bytes(&self) -> u64 {
        self.bytes
            .saturating_sub(RESERVED_BYTES + self.bytes / RESERVED_SHARE)
    }

    /// The bytes the reserve leaves the remembered rows of the lateness window. They cannot fold
    /// (forgetting one early could count its rewrite twice), so past this the exporter only
    /// warns: the insert rate times `--ledger.lateness` is what fills it.
    pub fn rows_bytes(&self) -> u64 {
        (RESERVED_BYTES + self.bytes / RESERVED_SHARE).saturating_sub(PROCESS_BYTES)
    }

    /// Whether `rows` remembered rows fit their share.
    pub fn rows_fit(&self, rows: u64) -> bool {
        rows.saturating_mul(ROW_BYTES) <= self.rows_bytes()
    }
}

/// "512MiB", "1.5GiB", "2G", "800M", "1Gi" (Kubernetes' spelling), "1000000" (bytes). Binary
/// and decimal prefixes mean what they say: "1GB" is 10^9 bytes, "1GiB" and "1Gi" 2^30.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 512MiB, 2GiB, 1Gi, 800MB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (use B, KB, MB, GB, KiB, MiB, GiB or Ki, Mi, Gi)"
            ))
        }
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes as u64)
}

/// The budget in force: `flag` ("none" turns the guard off), else the container's limit.
pub fn resolve(flag: Option<&str>) -> Result<Option<MemoryBudget>, String> {
    match flag.map(str::trim) {
        Some("none") | Some("off") => Ok(None),
        Some(s) => {
            let bytes = parse_bytes(s).map_err(|e| format!("--memory.budget {e}"))?;
            if bytes < MIN_BUDGET {
                return Err(format!(
                    "--memory.budget {s:?} is below the minimum of 64MiB"
                ));
            }
            Ok(Some(MemoryBudget {
                bytes,
                source: "--memory.budget".into(),
            }))
        }
        None => Ok(
            cgroup_limit(Path::new("/proc/self/cgroup"), Path::new("/sys/fs/cgroup")).map(
                |(limit, file)| MemoryBudget {
                    bytes: (limit / 100 * LIMIT_SHARE_PERCENT).max(MIN_BUDGET.min(limit)),
                    source: format!(
                        "{LIMIT_SHARE_PERCENT}% of the container memory limit ({} in {})",
                        human(limit),
                        file.display()
                    ),
                },
            ),
        ),
    }
}

/// "1.5 GiB", "300.0 MiB".
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

/// The memory limit of this process's cgroup, and the file that says it: v2's `memory.max`, or
/// v1's `memory.limit_in_bytes`, under the path `/proc/self/cgroup` names (inside a container
/// with its own cgroup namespace that path is `/`). None without a limit ("max", or v1's
/// "unlimited" value near 2^63) or without cgroups.
pub fn cgroup_limit(proc_cgroup: &Path, root: &Path) -> Option<(u64, PathBuf)> {
    let text = std::fs::read_to_string(proc_cgroup).unwrap_or_default();
    let mut candidates = Vec::new();
    for line in text.lines() {
        // "hierarchy-id:controllers:path"
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            candidates.push(root.join(rel).join("memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            candidates.push(root.join("memory").join(rel).join("memory.limit_in_bytes"));
        }
    }
    // A container without its own cgroup namespace may see a host path that is not mounted.
    candidates.push(root.join("memory.max"));
    candidates.push(root.join("memory").join("memory.limit_in_bytes"));
    candidates.into_iter().find_map(|file| {
        let v = std::fs::read_to_string(&file).ok()?;
        let v = v.trim();
        if v == "max" {
            return None;
        }
        let limit: u64 = v.parse().ok()?;
        // v1 reports "no limit" as the largest page-aligned i64.
        (limit < (1u64 << 62)).then_some((limit, file))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_every_spelling() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_bytes(" 800 M "), Ok(800_000_000));
        assert_eq!(parse_bytes("1000000"), Ok(1_000_000));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
    }

    #[test]
    fn the_flag_wins_and_none_turns_the_guard_off() {
        assert_eq!(resolve(Some("none")), Ok(None));
        let b = resolve(Some("1GiB")).unwrap().unwrap();
        assert_eq!(b.bytes, 1 << 30);
        assert_eq!(b.classes_bytes(), (1 << 30) - (48 << 20) - (1 << 27));
        assert!(resolve(Some("10MiB")).unwrap_err().contains("minimum"));
    }

    #[test]
    fn the_remembered_rows_have_the_reserve_less_the_process() {
        let b = resolve(Some("512MiB")).unwrap().unwrap();
        // 48 MiB + 64 MiB reserved, 24 MiB of it the process: 88 MiB for rows.
        assert_eq!(b.rows_bytes(), 88 << 20);
        assert!(b.rows_fit((88 << 20) / ROW_BYTES));
        assert!(!b.rows_fit((88 << 20) / ROW_BYTES + 1));
    }

    #[test]
    fn cgroup_v1_and_v2_limits_are_found_where_proc_says() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sys");
        let proc_file = dir.path().join("cgroup");
        // v2: one unified line.
        std::fs::create_dir_all(root.join("kubepods/pod1")).unwrap();
        std::fs::write(root.join("kubepods/pod1/memory.max"), "1073741824\n").unwrap();
        std::fs::write(&proc_file, "0::/kubepods/pod1\n").unwrap();
        let (limit, file) = cgroup_limit(&proc_file, &root).unwrap();
        assert_eq!(limit, 1 << 30);
        assert!(file.ends_with("kubepods/pod1/memory.max"));
        std::fs::write(root.join("kubepods/pod1/memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_limit(&proc_file, &root), None);
        // v1: the memory controller's line.
        std::fs::create_dir_all(root.join("memory/docker/abc")).unwrap();
        std::fs::write(
            root.join("memory/docker/abc/memory.limit_in_bytes"),
            "536870912\n",
        )
        .unwrap();
        std::fs::write(
            &proc_file,
            "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n",
        )
        .unwrap();
        assert_eq!(cgroup_limit(&proc_file, &root).unwrap().0, 512 << 20);
        std::fs::write(
            root.join("memory/docker/abc/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        assert_eq!(cgroup_limit(&proc_file, &root), None);
    }
}
