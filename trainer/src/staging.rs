//! Staging names for outputs written beside their final place and renamed into it: `.NAME.partial-PID`.
//! A process killed (kill -9, power loss) before its rename leaves its staging entry behind; the next
//! writer of the same NAME removes the entries whose process is gone, so nothing half-written (a
//! release, a prepared split, a private key) stays on the node.

use std::path::{Path, PathBuf};

/// This process's staging path for `name` in `parent`.
pub fn partial(parent: &Path, name: &str) -> PathBuf {
    parent.join(format!(".{name}.partial-{}", std::process::id()))
}

/// Removes the staging entries for `name` in `parent` left by processes that no longer run (a
/// directory's tree or a file). Best effort: an entry that cannot be removed stays.
pub fn remove_stale(parent: &Path, name: &str) {
    let prefix = format!(".{name}.partial-");
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else { continue };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let p = e.path();
        let _ = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&p),
            _ => std::fs::remove_file(&p),
        };
    }
}

/// Writes `bytes` to `path` whole or not at all: into this process's staging file beside it, synced,
/// then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let parent = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = partial(parent, name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
