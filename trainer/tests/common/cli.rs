//! The `medtrain` binary on the demo cohort: shared by the tests of train, export and verify.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medtrain"))
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// One demo export of 400 subjects for every test of this file.
pub fn export() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let out =
            bin().args(["demo-data", "--subjects", "400", "--out"]).arg(d.path().join("export")).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        d
    })
    .path()
}

/// configs/NAME.toml pointed at the shared export, with `edits` (old, new) applied, written into `dir`.
pub fn config(name: &str, dir: &Path, edits: &[(&str, &str)]) -> PathBuf {
    let mut s = std::fs::read_to_string(repo().join("configs").join(format!("{name}.toml"))).unwrap();
    s = s
        .replace("input = \"../demo-export\"", &format!("input = {:?}", export().join("export").display().to_string()));
    for (old, new) in edits {
        assert!(s.contains(old), "configs/{name}.toml has no {old:?}");
        s = s.replace(old, new);
    }
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, s).unwrap();
    p
}

/// The fingerprint of the shared export (what a permit covers).
pub fn fingerprint() -> &'static str {
    static FP: OnceLock<String> = OnceLock::new();
    FP.get_or_init(|| {
        let o = bin().args(["data", "fingerprint"]).arg(export().join("export")).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    })
}

/// `medtrain` with the node state (permits, ledger, key) in `dir/node`, holding a permit for the
/// shared export (issued once per node directory).
pub fn node(dir: &Path) -> Command {
    let home = dir.join("node");
    if !home.join("permits").exists() {
        let o = bin()
            .env("MEDTRAIN_HOME", &home)
            .env_remove("MEDTRAIN_NODE_KEY")
            .args(["permit", "issue", "--project", "test", "--purpose", "tests", "--dataset", fingerprint()])
            .args(["--expires", "2999-12-31", "--epsilon", "100", "--delta", "1e-5"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut c = bin();
    c.env("MEDTRAIN_HOME", &home).env_remove("MEDTRAIN_NODE_KEY");
    c
}

pub fn train(cfg: &Path, run: &Path, extra: &[&str]) -> Output {
    node(cfg.parent().unwrap())
        .args(["train"])
        .arg(cfg)
        .arg("--run-dir")
        .arg(run)
        .args(["--threads", "2", "--json"])
        .args(extra)
        .output()
        .unwrap()
}

pub fn last_json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line =
        text.lines().last().unwrap_or_else(|| panic!("no output; stderr: {}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(line).unwrap()
}

/// `medtrain data prepare --config CFG --out OUT`.
pub fn prepare(cfg: &Path, out: &Path) -> Output {
    bin().args(["data", "prepare", "--config"]).arg(cfg).arg("--out").arg(out).output().unwrap()
}

/// [`prepare`], which must succeed: the `manifest.json` it wrote.
pub fn prepared_manifest(cfg: &Path, out: &Path) -> serde_json::Value {
    let o = prepare(cfg, out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap()
}
