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

#[cfg(test)]
mod tests {
    use super::*;

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
