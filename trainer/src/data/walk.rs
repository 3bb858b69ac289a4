//! The files of an input: the one place that walks an input directory (readers, `data check`,
//! `data prepare`, the fingerprint).
//!
//! An input is what the environment's operator put under one root, and nothing else: a symlink is
//! followed only when its target lies inside the root (a link out of it would let an input name any
//! file the node can read), a directory reached twice (two links to `.`, a link to a parent) is a loop
//! and an error rather than a walk without end, and anything that is not a regular file or a directory
//! (a FIFO, a socket, a device, a link to `/dev/zero`) is refused before it is opened, since reading one
//! blocks or never ends. Errors name the path relative to the root (paths are not patient data) and
//! never print file contents.

use super::{DataError, Result};
use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What a non-regular, non-directory file is, for the error.
fn special_kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

struct Walk<'a> {
    /// the root as given: returned paths start with it
    root: &'a Path,
    /// the root with every link resolved: link targets must start with it
    canonical_root: PathBuf,
    /// (device, inode) of every directory entered
    seen: HashSet<(u64, u64)>,
    recursive: bool,
    out: Vec<PathBuf>,
}

impl Walk<'_> {
    fn err(&self, path: &Path, msg: impl std::fmt::Display) -> DataError {
        let rel = path.strip_prefix(self.root).unwrap_or(path);
        let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        // a name inside the input may be a patient's (per-patient files, folders)
        let rel = crate::data::guard::shown_path(&rel.to_string_lossy());
        DataError::Format { path: self.root.to_path_buf(), msg: format!("{rel}: {msg}") }
    }

    fn dir(&mut self, dir: &Path) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| self.err(dir, e))?
            .map(|e| e.map(|e| e.path()).map_err(|e| self.err(dir, e)))
            .collect::<Result<_>>()?;
        entries.sort();
        for p in entries {
            let lmeta = std::fs::symlink_metadata(&p).map_err(|e| self.err(&p, e))?;
            let meta = if lmeta.file_type().is_symlink() {
                let target = std::fs::canonicalize(&p)
                    .map_err(|_| self.err(&p, "is a symlink whose target cannot be resolved (dangling or a loop)"))?;
                if !target.starts_with(&self.canonical_root) {
                    return Err(self.err(&p, "is a symlink to a path outside the input root; it is not followed"));
                }
                std::fs::metadata(&p).map_err(|e| self.err(&p, e))?
            } else {
                lmeta
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                if !self.recursive {
                    continue;
                }
                if !self.seen.insert((meta.dev(), meta.ino())) {
                    return Err(self.err(&p, "reaches a directory already walked (a symlink loop or a second link)"));
                }
                self.dir(&p)?;
            } else if ft.is_file() {
                self.out.push(p);
            } else {
                return Err(self.err(&p, format_args!("is {}; only regular files are read", special_kind(&ft))));
            }
        }
        Ok(())
    }
}

/// The regular files of an input: `root` itself when it is a file, else the files under it (in its
/// subdirectories too when `recursive`), sorted by path. Refuses links out of the root, loops and
/// special files (see the module doc).
pub fn files(root: &Path, recursive: bool) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(root).map_err(|e| DataError::io(root, e))?;
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    if !ft.is_dir() {
        return Err(DataError::Format {
            path: root.to_path_buf(),
            msg: format!("is {}; an input is a file or a directory", special_kind(&ft)),
        });
    }
    let canonical_root = std::fs::canonicalize(root).map_err(|e| DataError::io(root, e))?;
    let mut w = Walk { root, canonical_root, seen: HashSet::new(), recursive, out: Vec::new() };
    w.seen.insert((meta.dev(), meta.ino()));
    w.dir(root)?;
    w.out.sort();
    Ok(w.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_links_lists_its_files_in_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        for f in ["b.ndjson", "a.ndjson", "sub/c.ndjson"] {
            std::fs::write(d.path().join(f), b"{}\n").unwrap();
        }
        let flat = files(d.path(), false).unwrap();
        assert_eq!(flat, vec![d.path().join("a.ndjson"), d.path().join("b.ndjson")]);
        let deep = files(d.path(), true).unwrap();
        assert_eq!(deep.len(), 3);
        assert_eq!(deep[2], d.path().join("sub/c.ndjson"));
    }

    #[test]
    fn a_link_inside_the_root_is_followed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::fs::write(d.path().join("real/x.ndjson"), b"{}\n").unwrap();
        std::os::unix::fs::symlink("real/x.ndjson", d.path().join("y.ndjson")).unwrap();
        let flat = files(d.path(), false).unwrap();
        assert_eq!(flat, vec![d.path().join("y.ndjson")]);
    }
}
