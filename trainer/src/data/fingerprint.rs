//! The dataset fingerprint: a content hash of a run's inputs, for permits, the ledger and reproduce.
//!
//! `sha256:` + SHA-256 over one line per file, in path order: `<relative path>\t<size>\t<sha256 of the
//! contents>\n`. Renaming a file, changing a byte, adding or removing a file changes it; file times and
//! the directory's own location do not.

use super::{DataError, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The fingerprint of a file or a directory tree.
pub fn fingerprint(path: &Path) -> Result<String> {
    // links out of the root, loops and special files are refused by the walk
    let files = super::walk::files(path, true).map_err(|e| e.inside(path))?;
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e).inside(path))?;
    let root =
        if meta.is_dir() { path.to_path_buf() } else { path.parent().map(Path::to_path_buf).unwrap_or_default() };
    let mut rel: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|p| (p.strip_prefix(&root).unwrap_or(&p).to_string_lossy().replace('\\', "/"), p))
        .collect();
    rel.sort();
    let mut all = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for (name, p) in rel {
        // (errors name the file as the readers' do: a folder per patient inside the input not printed)
        let mut f = std::fs::File::open(&p).map_err(|e| DataError::io(&p, e).inside(&root))?;
        let mut h = Sha256::new();
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| DataError::io(&p, e).inside(&root))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            h.update(&buf[..n]);
        }
        all.update(format!("{name}\t{size}\t{}\n", hex(&h.finalize())).as_bytes());
    }
    Ok(format!("sha256:{}", hex(&all.finalize())))
}

/// What each file of an input is on its file system (its path, device, inode, size, modification and
/// change times), taken before the input is read and compared after its fingerprint is: a file
/// replaced, written or renamed in between changes one of them (a change time cannot be set back), so
/// the fingerprint is of the bytes that were read (found by a tester: an input given by a link was read
/// as one cohort and fingerprinted, after the link was swapped, as the permitted one).
/// (A link is recorded as itself too, its inode and change time: one swapped to another file of the
/// input and back would leave its target's record as it was.)
#[derive(Debug, PartialEq)]
pub struct Snapshot(Vec<(PathBuf, [i64; 8])>);

impl Snapshot {
    pub fn take(path: &Path) -> Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let files = super::walk::files(path, true).map_err(|e| e.inside(path))?;
        let mut all = Vec::with_capacity(files.len());
        for p in files {
            let m = std::fs::metadata(&p).map_err(|e| DataError::io(&p, e).inside(path))?;
            let l = std::fs::symlink_metadata(&p).map_err(|e| DataError::io(&p, e).inside(path))?;
            let at = [
                m.dev() as i64,
                m.ino() as i64,
                m.size() as i64,
                m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                m.ctime() * 1_000_000_000 + m.ctime_nsec(),
                l.ino() as i64,
                l.ctime() * 1_000_000_000 + l.ctime_nsec(),
                0,
            ];
            all.push((p, at));
        }
        all.sort();
        Ok(Snapshot(all))
    }
}

/// An input's path resolved once, so that what is read and fingerprinted is one tree however its links
/// change: a directory canonicalized; a file its directory canonicalized and its own name kept (the
/// fingerprint names a file input by its name: a link's, as `data fingerprint` names it).
pub fn resolved_input(input: &Path) -> PathBuf {
    if std::fs::metadata(input).is_ok_and(|m| m.is_dir()) {
        return std::fs::canonicalize(input).unwrap_or_else(|_| input.to_path_buf());
    }
    match (input.parent().filter(|p| !p.as_os_str().is_empty()), input.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir).map_or_else(|_| input.to_path_buf(), |d| d.join(name)),
        _ => input.to_path_buf(),
    }
}

/// The fingerprint of the input at `path` (as resolved when `before` was taken), refused where a file
/// of it changed since `before` was taken.
pub fn fingerprint_unchanged(path: &Path, before: &Snapshot) -> Result<String> {
    let fp = fingerprint(path)?;
    if Snapshot::take(path)? != *before {
        return Err(DataError::Invalid(format!(
            "{}: the input changed while it was read (a file written, replaced, added or removed, or a link \
             swapped): nothing was prepared; read it again when it is no longer being written",
            super::guard::shown_user_path(&path.display().to_string())
        )));
    }
    Ok(fp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_between_the_snapshot_and_the_fingerprint_is_refused() {
        let a = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("x.ndjson"), b"{}\n").unwrap();
        let before = Snapshot::take(a.path()).unwrap();
        assert!(fingerprint_unchanged(a.path(), &before).is_ok());
        // the same length, written again (its change time moves, whatever its modification time says)
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(a.path().join("x.ndjson"), b"[]\n").unwrap();
        let e = fingerprint_unchanged(a.path(), &before).unwrap_err().to_string();
        assert!(e.contains("changed while it was read"), "{e}");
        // a file added
        let before = Snapshot::take(a.path()).unwrap();
        std::fs::write(a.path().join("y.ndjson"), b"{}\n").unwrap();
        assert!(fingerprint_unchanged(a.path(), &before).is_err());
    }

    #[test]
    fn fingerprint_follows_content_and_names_only() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [&a, &b] {
            std::fs::create_dir(d.path().join("sub")).unwrap();
            std::fs::write(d.path().join("x.ndjson"), b"{}\n").unwrap();
            std::fs::write(d.path().join("sub/y.ndjson"), b"[]\n").unwrap();
        }
        let fa = fingerprint(a.path()).unwrap();
        assert!(fa.starts_with("sha256:") && fa.len() == 71);
        assert_eq!(fa, fingerprint(b.path()).unwrap());
        std::fs::write(b.path().join("sub/y.ndjson"), b"[ ]\n").unwrap();
        assert_ne!(fa, fingerprint(b.path()).unwrap());
        std::fs::write(b.path().join("sub/y.ndjson"), b"[]\n").unwrap();
        std::fs::rename(b.path().join("x.ndjson"), b.path().join("z.ndjson")).unwrap();
        assert_ne!(fa, fingerprint(b.path()).unwrap());
    }
}
