//! The node key and its SSHSIG signatures: round trips, each way a verification fails, the key file's
//! mode, and interoperability with the real OpenSSH `ssh-keygen -Y sign/verify` in both directions.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use medtrain::privacy::sshsig::{verify, NodeKey, SigError, IDENTITY, NAMESPACE};

const MESSAGE: &[u8] = b"medtrain release manifest\nmodel.safetensors sha256 0123abcd\n";

fn fresh_key(dir: &Path, name: &str) -> (NodeKey, PathBuf) {
    let path = dir.join(name);
    (NodeKey::load_or_create(&path).expect("create key"), path)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn round_trip_sign_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = fresh_key(dir.path(), "node.key");
    let public = key.public_openssh();
    assert!(public.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"), "{public}");
    assert!(public.ends_with(&format!(" {IDENTITY}")), "{public}");

    let signature = key.sign(MESSAGE, NAMESPACE);
    assert!(signature.starts_with("-----BEGIN SSH SIGNATURE-----\n"), "{signature}");
    assert!(signature.ends_with("\n-----END SSH SIGNATURE-----\n"), "{signature}");
    let body: Vec<&str> = signature.lines().skip(1).take_while(|l| !l.starts_with("-----END")).collect();
    assert!(body[..body.len() - 1].iter().all(|l| l.len() == 70), "wrapped at 70 columns like ssh-keygen");
    assert!(body.last().unwrap().len() <= 70);

    verify(&public, MESSAGE, &signature, NAMESPACE).expect("own signature verifies");
    // the comment of the public key line does not matter
    let bare: String = public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    verify(&bare, MESSAGE, &signature, NAMESPACE).expect("public key line without comment");
}

#[test]
fn tampered_message_is_a_bad_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = fresh_key(dir.path(), "node.key");
    let signature = key.sign(MESSAGE, NAMESPACE);
    let mut tampered = MESSAGE.to_vec();
    tampered[5] ^= 1;
    let err = verify(&key.public_openssh(), &tampered, &signature, NAMESPACE).unwrap_err();
    assert!(matches!(err, SigError::BadSignature), "{err:?}");
}

#[test]
fn tampered_signature_is_a_bad_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = fresh_key(dir.path(), "node.key");
    let signature = key.sign(MESSAGE, NAMESPACE);
    // flip a base64 character inside the last line, which holds the Ed25519 signature bytes
    let mut lines: Vec<String> = signature.lines().map(str::to_owned).collect();
    let last_body = lines.len() - 2;
    let line = &mut lines[last_body];
    let pos = line.len() / 2;
    let replacement = if &line[pos..pos + 1] == "A" { "B" } else { "A" };
    line.replace_range(pos..pos + 1, replacement);
    let tampered = lines.join("\n") + "\n";
    let err = verify(&key.public_openssh(), MESSAGE, &tampered, NAMESPACE).unwrap_err();
    assert!(matches!(err, SigError::BadSignature), "{err:?}");
}

#[test]
fn wrong_namespace_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = fresh_key(dir.path(), "node.key");
    let signature = key.sign(MESSAGE, "file");
    let err = verify(&key.public_openssh(), MESSAGE, &signature, NAMESPACE).unwrap_err();
    match &err {
        SigError::WrongNamespace { expected, found } => {
            assert_eq!(expected, NAMESPACE);
            assert_eq!(found, "file");
        }
        other => panic!("expected WrongNamespace, got {other:?}"),
    }
    assert!(err.to_string().contains("medtrain-release"), "{err}");
}

#[test]
fn other_key_is_the_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = fresh_key(dir.path(), "node.key");
    let (other, _) = fresh_key(dir.path(), "other.key");
    assert_ne!(key.public_openssh(), other.public_openssh(), "two fresh keys differ");
    let signature = other.sign(MESSAGE, NAMESPACE);
    let err = verify(&key.public_openssh(), MESSAGE, &signature, NAMESPACE).unwrap_err();
    assert!(matches!(err, SigError::WrongKey), "{err:?}");
}

#[test]
fn bad_armor_and_bad_public_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = fresh_key(dir.path(), "node.key");
    let public = key.public_openssh();
    let signature = key.sign(MESSAGE, NAMESPACE);

    let err = verify(&public, MESSAGE, "not a signature", NAMESPACE).unwrap_err();
    assert!(matches!(err, SigError::Armor(_)), "{err:?}");
    let truncated = signature.replace("-----END SSH SIGNATURE-----\n", "");
    let err = verify(&public, MESSAGE, &truncated, NAMESPACE).unwrap_err();
    assert!(matches!(err, SigError::Armor(_)), "{err:?}");
    let not_base64 = signature.replacen('A', "*", 1);
    let err = verify(&public, MESSAGE, &not_base64, NAMESPACE).unwrap_err();
    assert!(matches!(err, SigError::Armor(_)), "{err:?}");
    let short = "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n";
    let err = verify(&public, MESSAGE, short, NAMESPACE).unwrap_err();
    assert!(matches!(err, SigError::Format(_)), "{err:?}");

    let err = verify("ssh-rsa AAAAB3NzaC1yc2E", MESSAGE, &signature, NAMESPACE).unwrap_err();
    assert!(matches!(err, SigError::PublicKey(_)), "{err:?}");
}

#[test]
fn key_file_is_created_0600_and_reloads_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/node.key");
    let key = NodeKey::load_or_create(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("keys")), 0o700, "missing parent dir is created 0700");
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"), "OpenSSH private key format");

    let again = NodeKey::load_or_create(&path).unwrap();
    assert_eq!(again.public_openssh(), key.public_openssh(), "existing key is loaded, not replaced");
    assert_eq!(NodeKey::load(&path).unwrap().public_openssh(), key.public_openssh());
    assert_eq!(fs::read_to_string(&path).unwrap(), text, "loading does not rewrite the file");
}

#[test]
fn key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = fresh_key(dir.path(), "node.key");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    for result in [NodeKey::load(&path), NodeKey::load_or_create(&path)] {
        let err = result.unwrap_err();
        assert!(matches!(err, SigError::KeyFileMode { mode: 0o644, .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "names the file: {message}");
        assert!(message.contains("chmod 600"), "says the fix: {message}");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    assert!(matches!(NodeKey::load(&path), Err(SigError::KeyFileMode { .. })), "group-readable is refused too");
}

#[test]
fn damaged_key_file_names_the_file_and_no_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = fresh_key(dir.path(), "node.key");
    let text = fs::read_to_string(&path).unwrap();
    // cut the base64 body short: the private section is truncated
    let lines: Vec<&str> = text.lines().collect();
    let damaged = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[lines.len() - 1]);
    fs::write(&path, &damaged).unwrap();
    let err = NodeKey::load(&path).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SigError::KeyFile { .. }), "{err:?}");
    assert!(message.contains(&path.display().to_string()), "names the file: {message}");
    assert!(!message.contains(lines[1]), "no key text in the error: {message}");

    fs::write(&path, "hello\n").unwrap();
    assert!(matches!(NodeKey::load(&path), Err(SigError::KeyFile { .. })));
}

#[test]
fn debug_prints_no_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let (key, path) = fresh_key(dir.path(), "node.key");
    let debug = format!("{key:?}");
    assert!(debug.contains("SHA256:"), "{debug}");
    let text = fs::read_to_string(&path).unwrap();
    for line in text.lines().filter(|l| !l.starts_with("-----")) {
        for chunk in line.as_bytes().chunks(16) {
            let chunk = std::str::from_utf8(chunk).unwrap();
            assert!(!debug.contains(chunk), "Debug shows part of the key file: {debug}");
        }
    }
}

// ---- the real OpenSSH ssh-keygen -------------------------------------------------------------------

fn ssh_keygen() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/ssh-keygen");
    if path.exists() {
        return Some(path);
    }
    if std::env::var("MEDTRAIN_REQUIRE_SSH_KEYGEN").as_deref() == Ok("1") {
        panic!("MEDTRAIN_REQUIRE_SSH_KEYGEN=1 but /usr/bin/ssh-keygen is missing");
    }
    eprintln!("NOTICE: /usr/bin/ssh-keygen is missing, skipping the OpenSSH interoperability check");
    None
}

/// Runs `ssh-keygen -Y verify` with `message` on stdin; (success, stdout + stderr).
fn ssh_keygen_verify(keygen: &Path, dir: &Path, public: &str, message: &[u8], sig: &Path) -> (bool, String) {
    let allowed = dir.join("allowed_signers");
    let key_fields: Vec<&str> = public.split_whitespace().take(2).collect();
    fs::write(&allowed, format!("{IDENTITY} namespaces=\"{NAMESPACE}\" {}\n", key_fields.join(" "))).unwrap();
    let msg_path = dir.join("verify_input");
    fs::write(&msg_path, message).unwrap();
    let output = Command::new(keygen)
        .args(["-Y", "verify", "-f"])
        .arg(&allowed)
        .args(["-I", IDENTITY, "-n", NAMESPACE, "-s"])
        .arg(sig)
        .stdin(fs::File::open(&msg_path).unwrap())
        .output()
        .expect("run ssh-keygen -Y verify");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Runs `ssh-keygen -Y sign -f key -n NAMESPACE msg` and returns the armored signature it wrote.
fn ssh_keygen_sign(keygen: &Path, key: &Path, msg: &Path) -> String {
    let sig = PathBuf::from(format!("{}.sig", msg.display()));
    let _ = fs::remove_file(&sig);
    let output = Command::new(keygen)
        .args(["-Y", "sign", "-f"])
        .arg(key)
        .args(["-n", NAMESPACE])
        .arg(msg)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen -Y sign");
    assert!(
        output.status.success(),
        "ssh-keygen -Y sign failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    fs::read_to_string(&sig).unwrap()
}

#[test]
fn ssh_keygen_verifies_our_signature_and_rejects_a_changed_byte() {
    let Some(keygen) = ssh_keygen() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = fresh_key(dir.path(), "node.key");
    fs::write(dir.path().join("node.pub"), key.public_openssh() + "\n").unwrap();
    let sig_path = dir.path().join("msg.sig");
    fs::write(&sig_path, key.sign(MESSAGE, NAMESPACE)).unwrap();

    let (ok, text) = ssh_keygen_verify(&keygen, dir.path(), &key.public_openssh(), MESSAGE, &sig_path);
    assert!(ok && text.contains("Good"), "ssh-keygen refused our signature: {text}");

    let mut changed = MESSAGE.to_vec();
    changed[0] ^= 0x20;
    let (ok, text) = ssh_keygen_verify(&keygen, dir.path(), &key.public_openssh(), &changed, &sig_path);
    assert!(!ok, "ssh-keygen accepted a changed message: {text}");
}

#[test]
fn ssh_keygen_signs_with_our_key_file_and_we_verify_it() {
    let Some(keygen) = ssh_keygen() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key, key_path) = fresh_key(dir.path(), "node.key");

    // ssh-keygen reads our key file: it derives the same public key
    let output = Command::new(&keygen).arg("-y").arg("-f").arg(&key_path).output().unwrap();
    assert!(output.status.success(), "ssh-keygen -y: {}", String::from_utf8_lossy(&output.stderr));
    let derived = String::from_utf8(output.stdout).unwrap();
    assert_eq!(derived.trim(), key.public_openssh(), "ssh-keygen -y derives our public key and comment");

    let msg = dir.path().join("msg");
    fs::write(&msg, MESSAGE).unwrap();
    let signature = ssh_keygen_sign(&keygen, &key_path, &msg);
    verify(&key.public_openssh(), MESSAGE, &signature, NAMESPACE).expect("we verify ssh-keygen's signature");
    // Ed25519 is deterministic and both sides use sha512: the same bytes as ours
    assert_eq!(signature, key.sign(MESSAGE, NAMESPACE), "identical to our own signature");
    assert!(matches!(
        verify(&key.public_openssh(), b"another message", &signature, NAMESPACE),
        Err(SigError::BadSignature)
    ));
}

#[test]
fn we_load_and_verify_a_key_made_by_ssh_keygen() {
    let Some(keygen) = ssh_keygen() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("id_ed25519");
    let output = Command::new(&keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "made-by-ssh-keygen", "-f"])
        .arg(&key_path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "ssh-keygen -t ed25519: {}", String::from_utf8_lossy(&output.stderr));
    let public = fs::read_to_string(dir.path().join("id_ed25519.pub")).unwrap();

    let msg = dir.path().join("msg");
    fs::write(&msg, MESSAGE).unwrap();
    let signature = ssh_keygen_sign(&keygen, &key_path, &msg);
    verify(public.trim(), MESSAGE, &signature, NAMESPACE).expect("we verify a signature by an ssh-keygen key");

    // and we read ssh-keygen's private key file: same public key, and ssh-keygen verifies what we sign
    let key = NodeKey::load(&key_path).expect("load ssh-keygen's key file");
    let fields = |line: &str| line.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(fields(&key.public_openssh()), fields(&public));
    let sig_path = dir.path().join("ours.sig");
    fs::write(&sig_path, key.sign(MESSAGE, NAMESPACE)).unwrap();
    let (ok, text) = ssh_keygen_verify(&keygen, dir.path(), &public, MESSAGE, &sig_path);
    assert!(ok && text.contains("Good"), "{text}");
}

#[test]
fn a_file_that_is_no_key_is_not_quoted() {
    // a patient's line given as the public key (verify --key Patient.ndjson): its first word was printed
    // as the "key type"
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = fresh_key(dir.path(), "node.key");
    let signature = key.sign(MESSAGE, NAMESPACE);
    for public in [
        r#"{"resourceType":"Patient","id":"PTCANARY7731","gender":"female"} x"#,
        "ssh-ed25519 PTCANARY7731!!",
        "CANARYNAME-Taro AAAA",
    ] {
        let e = verify(public, MESSAGE, &signature, NAMESPACE).unwrap_err().to_string();
        assert!(!e.contains("CANARY"), "{e}");
    }
    let e = verify("ssh-rsa AAAAB3NzaC1yc2E", MESSAGE, &signature, NAMESPACE).unwrap_err().to_string();
    assert!(e.contains("\"ssh-rsa\""), "a real key type is named: {e}");
}

/// Found by a tester: a release signed by its key that lists no files (no weights at all) verified.
#[test]
fn a_signed_release_without_weights_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = fresh_key(dir.path(), "node.key");
    let rel = dir.path().join("release");
    fs::create_dir(&rel).unwrap();
    let release = br#"{"format":"medtrain-release/1","files":{},"privacy":{"epsilon":1.0}}"#;
    fs::write(rel.join("release.json"), release).unwrap();
    fs::write(rel.join("release.json.sig"), key.sign(release, NAMESPACE)).unwrap();
    fs::write(rel.join("node.pub"), key.public_openssh()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_medtrain")).arg("verify").arg(&rel).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("no model.safetensors"), "{e}");
}
