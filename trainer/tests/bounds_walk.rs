//! The walk of an input directory (`data check`, `data prepare`, `data fingerprint`) with real symlinks
//! and a real FIFO: loops end, links out of the root and special files are refused by name.

mod common;

use std::path::Path;
use std::process::Command;

const LAB: &str = r#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-02","valueQuantity":{"value":1.1,"unit":"mg/dL"}}"#;

fn run(args: &[&str], path: &Path) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_medtrain")).args(args).arg(path).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn export(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Observation.ndjson"), format!("{LAB}\n")).unwrap();
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn two_symlinks_to_dot_are_a_loop_that_fingerprint_reports_instead_of_walking_forever() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("in");
    export(&input);
    std::os::unix::fs::symlink(".", input.join("a")).unwrap();
    std::os::unix::fs::symlink(".", input.join("b")).unwrap();
    // (2: an input that cannot be read, as data check says it)
    let (code, err) = run(&["data", "fingerprint"], &input);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a: reaches a directory already walked"), "{err}");
    // data check walks the same way (it read the top level only and passed what fingerprint refused)
    let (code, err) = run(&["data", "check"], &input);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("a: reaches a directory already walked"), "{err}");
    let (code, err) = run(&["data", "check", "--fingerprint"], &input);
    assert_ne!(code, 0);
    assert!(err.contains("already walked"), "{err}");
}

#[test]
fn a_symlink_to_a_file_outside_the_root_is_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("in");
    export(&input);
    let outside = root.path().join("private.ndjson");
    std::fs::write(&outside, format!("{LAB}\n")).unwrap();
    std::os::unix::fs::symlink(&outside, input.join("Patient.ndjson")).unwrap();
    for args in [&["data", "check"][..], &["data", "fingerprint"][..]] {
        let (code, err) = run(args, &input);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains("Patient.ndjson: is a symlink to a path outside the input root"), "{args:?}: {err}");
        assert!(!err.contains("private.ndjson"), "the target is not named: {err}");
    }
    // a link that stays inside the root is followed
    std::fs::remove_file(input.join("Patient.ndjson")).unwrap();
    std::fs::create_dir(input.join("sub")).unwrap();
    std::fs::write(input.join("sub/Encounter.ndjson"), format!("{LAB}\n")).unwrap();
    std::os::unix::fs::symlink("sub/Encounter.ndjson", input.join("Encounter.ndjson")).unwrap();
    assert_eq!(run(&["data", "check"], &input).0, 0);
    // the file the link reaches is read once, not once per path
    let (d, _) = medtrain::data::read(&input, &Default::default()).unwrap();
    assert_eq!(d.events.len(), 2);
    assert_eq!(run(&["data", "fingerprint"], &input).0, 0);
}

#[test]
fn a_fifo_in_the_input_is_refused_by_name_without_blocking() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("in");
    export(&input);
    mkfifo(&input.join("Condition.ndjson"));
    for args in [&["data", "check"][..], &["data", "fingerprint"][..]] {
        let (code, err) = run(args, &input);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains("Condition.ndjson: is a FIFO"), "{args:?}: {err}");
    }
    // the FIFO given as the input itself
    let (code, err) = run(&["data", "fingerprint"], &input.join("Condition.ndjson"));
    assert_ne!(code, 0);
    assert!(err.contains("is a FIFO"), "{err}");
}

#[test]
fn a_link_to_dev_zero_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("in");
    export(&input);
    std::os::unix::fs::symlink("/dev/zero", input.join("Observation2.ndjson")).unwrap();
    for args in [&["data", "check"][..], &["data", "fingerprint"][..]] {
        let (code, err) = run(args, &input);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains("Observation2.ndjson: is a symlink to a path outside the input root"), "{err}");
    }
    // given directly, /dev/zero is a character device, not an input
    let (code, err) = run(&["data", "fingerprint"], Path::new("/dev/zero"));
    assert_ne!(code, 0);
    assert!(err.contains("is a character device"), "{err}");
}

#[test]
fn data_prepare_refuses_a_symlink_loop_and_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("export");
    medtrain::data::demo::write(&input, 60, 3).unwrap();
    // (named as exports name folders: a name of other words is not printed)
    std::os::unix::fs::symlink(".", input.join("copy")).unwrap();
    std::os::unix::fs::symlink(".", input.join("backup")).unwrap();
    let cfg = root.path().join("data.toml");
    std::fs::write(&cfg, "input = \"export\"\n[labels]\ntask = \"ed_admission\"\n").unwrap();
    let out = root.path().join("prepared");
    let o = common::cli::prepare(&cfg, &out);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("backup: reaches a directory already walked"), "{err}");
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
