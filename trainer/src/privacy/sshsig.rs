//! The node's Ed25519 release key and OpenSSH SSHSIG signatures, so that anyone can check a release with
//! the standard `ssh-keygen -Y verify` and no medtrain code.
//!
//! The key file is the unencrypted OpenSSH private key format ("-----BEGIN OPENSSH PRIVATE KEY-----",
//! PROTOCOL.key in OpenSSH) holding one `ssh-ed25519` key with the comment [`IDENTITY`], so operators can
//! also use it directly: `ssh-keygen -Y sign -f node.key -n medtrain-release FILE`, `ssh-keygen -y -f
//! node.key`. It is created with mode 0600 and refused when group or others may read it.
//!
//! Signatures follow PROTOCOL.sshsig: version 1, hash `sha512` (verification also takes `sha256`, which
//! the protocol allows), armored and wrapped at 70 columns like ssh-keygen writes them.
//!
//! No error message and no `Debug` output carries key material: errors name the file and what was wrong.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::{OsRng, TryRngCore};
use sha2::{Digest, Sha256, Sha512};
use zeroize::{Zeroize, Zeroizing};

/// The SSHSIG namespace of medtrain releases (`ssh-keygen -Y ... -n medtrain-release`).
pub const NAMESPACE: &str = "medtrain-release";
/// The principal of the node key: the comment of its public key line and of its key file, and the
/// identity to list in an `allowed_signers` file (`ssh-keygen -Y verify -I medtrain-node`).
pub const IDENTITY: &str = "medtrain-node";

const KEY_TYPE: &str = "ssh-ed25519";
const SIG_MAGIC: &[u8; 6] = b"SSHSIG";
const SIG_VERSION: u32 = 1;
const SIG_HASH: &str = "sha512";
const SIG_ARMOR: &str = "SSH SIGNATURE";
const KEY_MAGIC: &[u8] = b"openssh-key-v1\0";
const KEY_ARMOR: &str = "OPENSSH PRIVATE KEY";
/// ssh-keygen wraps the base64 of both armors at 70 columns.
const ARMOR_WIDTH: usize = 70;
/// Padding block of an unencrypted ("none" cipher) private section.
const KEY_BLOCK: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SigError {
    #[error("key file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "key file {} may be read by group or others (mode {mode:03o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyFileMode { path: PathBuf, mode: u32 },
    #[error("key file {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error("OS entropy for a new key: {0}")]
    Entropy(String),
    #[error("public key: {0}")]
    PublicKey(String),
    #[error("signature armor: {0}")]
    Armor(String),
    #[error("signature format: {0}")]
    Format(String),
    #[error("signature is for namespace {found:?}, expected {expected:?}")]
    WrongNamespace { expected: String, found: String },
    #[error("signature was made by another key than the one given")]
    WrongKey,
    #[error("bad signature: the message or the signature was changed")]
    BadSignature,
}

/// The node's Ed25519 signing key. `Debug` shows only the public key's SHA256 fingerprint.
pub struct NodeKey {
    signing: SigningKey,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey").field("public", &self.fingerprint()).finish()
    }
}

impl NodeKey {
    /// Loads `path` or, when it does not exist, creates it with a fresh key from OS entropy (mode 0600,
    /// parent directory created 0700 if missing). Refuses a key file that group or others may read.
    pub fn load_or_create(path: &Path) -> Result<NodeKey, SigError> {
        match fs::symlink_metadata(path) {
            Ok(_) => return Self::load(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(SigError::Io { path: path.to_owned(), source }),
        }
        let io_err = |source| SigError::Io { path: path.to_owned(), source };
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = parent.filter(|d| !d.exists()) {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err)?;
        }

        let mut seed = Zeroizing::new([0u8; 32]);
        OsRng.try_fill_bytes(seed.as_mut()).map_err(|e| SigError::Entropy(e.to_string()))?;
        let mut check = [0u8; 4];
        OsRng.try_fill_bytes(&mut check).map_err(|e| SigError::Entropy(e.to_string()))?;
        let key = NodeKey { signing: SigningKey::from_bytes(&seed) };
        let text = key.private_openssh(u32::from_be_bytes(check));

        // written whole under a staging name, then linked into place: a process killed at any point
        // leaves either no key or a complete one (a half-written key would be refused at every start);
        // link fails when another process put its key there first, and theirs is used
        let dir = parent.unwrap_or(Path::new("."));
        let name = path.file_name().map_or("node_ed25519".into(), |n| n.to_string_lossy().into_owned());
        crate::staging::remove_stale(dir, &name);
        let tmp = crate::staging::partial(dir, &name);
        let _ = fs::remove_file(&tmp);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
        if let Err(source) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(source));
        }
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Self::load(path),
            Err(source) => return Err(io_err(source)),
        }
        // the new directory entry must survive a crash too, or the next start signs with another key
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
        Ok(key)
    }

    /// Loads an unencrypted OpenSSH `ssh-ed25519` private key file (as written by
    /// [`NodeKey::load_or_create`] or by `ssh-keygen -t ed25519 -N ''`).
    pub fn load(path: &Path) -> Result<NodeKey, SigError> {
        let io_err = |source| SigError::Io { path: path.to_owned(), source };
        let not_regular = || SigError::KeyFile { path: path.to_owned(), reason: "not a regular file".into() };
        // asked before opening: opening a FIFO blocks until someone writes to it
        if !fs::metadata(path).map_err(io_err)?.is_file() {
            return Err(not_regular());
        }
        let file = File::open(path).map_err(io_err)?;
        // the mode of the file we opened, not of whatever the path names a moment later
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(not_regular());
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SigError::KeyFileMode { path: path.to_owned(), mode });
        }
        let mut text = Zeroizing::new(Vec::new());
        // an OpenSSH Ed25519 key is about 400 bytes
        file.take(64 << 10).read_to_end(&mut text).map_err(io_err)?;
        let bad = |reason: String| SigError::KeyFile { path: path.to_owned(), reason };
        let text = std::str::from_utf8(&text).map_err(|_| bad("not an OpenSSH private key (not text)".into()))?;
        let blob = Zeroizing::new(dearmor(text, KEY_ARMOR).map_err(bad)?);
        let signing = parse_private(&blob).map_err(bad)?;
        Ok(NodeKey { signing })
    }

    /// The OpenSSH public key line, "ssh-ed25519 AAAA... medtrain-node".
    pub fn public_openssh(&self) -> String {
        format!("{KEY_TYPE} {} {IDENTITY}", STANDARD.encode(public_blob(&self.signing.verifying_key())))
    }

    /// The public key's fingerprint as `ssh-keygen -l` prints it, "SHA256:...".
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(public_blob(&self.signing.verifying_key()));
        format!("SHA256:{}", STANDARD_NO_PAD.encode(digest))
    }

    /// The armored SSHSIG signature (hash sha512) of `message` in `namespace`, as `ssh-keygen -Y sign`
    /// writes it.
    pub fn sign(&self, message: &[u8], namespace: &str) -> String {
        let verifying = self.signing.verifying_key();
        let signature = self.signing.sign(&signed_data(namespace, SIG_HASH, message));
        let mut sig_blob = Vec::new();
        put_string(&mut sig_blob, KEY_TYPE.as_bytes());
        put_string(&mut sig_blob, &signature.to_bytes());

        let mut blob = SIG_MAGIC.to_vec();
        blob.extend_from_slice(&SIG_VERSION.to_be_bytes());
        put_string(&mut blob, &public_blob(&verifying));
        put_string(&mut blob, namespace.as_bytes());
        put_string(&mut blob, b"");
        put_string(&mut blob, SIG_HASH.as_bytes());
        put_string(&mut blob, &sig_blob);
        armor(&blob, SIG_ARMOR)
    }

    /// The whole key file text. Zeroized on drop: it holds the seed.
    fn private_openssh(&self, check: u32) -> Zeroizing<String> {
        let verifying = self.signing.verifying_key();
        let mut private = Zeroizing::new(Vec::new());
        private.extend_from_slice(&check.to_be_bytes());
        private.extend_from_slice(&check.to_be_bytes());
        put_string(&mut private, KEY_TYPE.as_bytes());
        put_string(&mut private, verifying.as_bytes());
        // OpenSSH stores the 64-byte "secret key" of ref10: seed || public key
        let mut secret = Zeroizing::new([0u8; 64]);
        secret[..32].copy_from_slice(self.signing.as_bytes());
        secret[32..].copy_from_slice(verifying.as_bytes());
        put_string(&mut private, secret.as_ref());
        put_string(&mut private, IDENTITY.as_bytes());
        let mut pad = 1u8;
        while private.len() % KEY_BLOCK != 0 {
            private.push(pad);
            pad += 1;
        }

        let mut blob = Zeroizing::new(KEY_MAGIC.to_vec());
        put_string(&mut blob, b"none"); // cipher
        put_string(&mut blob, b"none"); // kdf
        put_string(&mut blob, b""); // kdf options
        blob.extend_from_slice(&1u32.to_be_bytes()); // number of keys
        put_string(&mut blob, &public_blob(&verifying));
        put_string(&mut blob, &private);
        Zeroizing::new(armor(&blob, KEY_ARMOR))
    }
}

/// Verifies the armored SSHSIG `signature` of `message` by the OpenSSH public key line `public`
/// ("ssh-ed25519 AAAA... [comment]") in `namespace`.
pub fn verify(public: &str, message: &[u8], signature: &str, namespace: &str) -> Result<(), SigError> {
    let expected_key = parse_public_line(public)?;
    let blob = dearmor(signature, SIG_ARMOR).map_err(SigError::Armor)?;
    let mut r = Reader::new(&blob);
    let format = |e: String| SigError::Format(e);
    if r.bytes(SIG_MAGIC.len()).map_err(format)? != SIG_MAGIC {
        return Err(SigError::Format("does not start with \"SSHSIG\"".into()));
    }
    let version = r.u32().map_err(format)?;
    if version != SIG_VERSION {
        return Err(SigError::Format(format!("version {version}, only {SIG_VERSION} is known")));
    }
    let key_blob = r.string("public key").map_err(format)?;
    let found_namespace = r.string("namespace").map_err(format)?;
    let _reserved = r.string("reserved").map_err(format)?;
    let hash = r.string("hash algorithm").map_err(format)?;
    let sig_blob = r.string("signature").map_err(format)?;
    r.finish("signature").map_err(format)?;

    if found_namespace != namespace.as_bytes() {
        return Err(SigError::WrongNamespace {
            expected: namespace.to_owned(),
            found: String::from_utf8_lossy(found_namespace).into_owned(),
        });
    }
    let hash = match hash {
        b"sha512" => "sha512",
        b"sha256" => "sha256",
        other => {
            return Err(SigError::Format(format!(
                "hash algorithm {:?} (sha512 or sha256 expected)",
                String::from_utf8_lossy(other)
            )));
        }
    };
    let signer = parse_public_blob(key_blob).map_err(SigError::Format)?;
    if signer != expected_key {
        return Err(SigError::WrongKey);
    }

    let mut r = Reader::new(sig_blob);
    let sig_type = r.string("signature type").map_err(format)?;
    if sig_type != KEY_TYPE.as_bytes() {
        return Err(SigError::Format(format!(
            "signature type {:?}, expected {KEY_TYPE}",
            String::from_utf8_lossy(sig_type)
        )));
    }
    let raw = r.string("signature bytes").map_err(format)?;
    r.finish("signature blob").map_err(format)?;
    let raw: &[u8; 64] = raw
        .try_into()
        .map_err(|_| SigError::Format(format!("ed25519 signature of {} bytes, expected 64", raw.len())))?;
    expected_key
        .verify_strict(&signed_data(namespace, hash, message), &Signature::from_bytes(raw))
        .map_err(|_| SigError::BadSignature)
}

/// What is actually signed (PROTOCOL.sshsig): "SSHSIG" || string(namespace) || string("") ||
/// string(hash algorithm) || string(H(message)).
fn signed_data(namespace: &str, hash: &str, message: &[u8]) -> Vec<u8> {
    let mut data = SIG_MAGIC.to_vec();
    put_string(&mut data, namespace.as_bytes());
    put_string(&mut data, b"");
    put_string(&mut data, hash.as_bytes());
    match hash {
        "sha256" => put_string(&mut data, &Sha256::digest(message)),
        _ => put_string(&mut data, &Sha512::digest(message)),
    }
    data
}

fn public_blob(key: &VerifyingKey) -> Vec<u8> {
    let mut blob = Vec::with_capacity(51);
    put_string(&mut blob, KEY_TYPE.as_bytes());
    put_string(&mut blob, key.as_bytes());
    blob
}

/// A key type as an error may show it: the name of an SSH key type, else words (a file that is no key
/// (a patient export given to --key) must not have its first word printed).
fn shown_key_type(t: &[u8]) -> String {
    const KNOWN: [&str; 6] = ["ssh-rsa", "ssh-dss", "ecdsa-sha2-", "sk-ssh-ed25519@", "sk-ecdsa-sha2-", "ssh-ed448"];
    match std::str::from_utf8(t) {
        Ok(name) if name.len() <= 64 && KNOWN.iter().any(|k| name.starts_with(k)) => format!("{name:?}"),
        _ => "that is not an SSH key type (not an OpenSSH public key; its text is not printed)".into(),
    }
}

fn parse_public_blob(blob: &[u8]) -> Result<VerifyingKey, String> {
    let mut r = Reader::new(blob);
    let key_type = r.string("key type")?;
    if key_type != KEY_TYPE.as_bytes() {
        return Err(format!("key type {}, only {KEY_TYPE} is supported", shown_key_type(key_type)));
    }
    let raw = r.string("ed25519 public key")?;
    r.finish("public key")?;
    let raw: &[u8; 32] =
        raw.try_into().map_err(|_| format!("ed25519 public key of {} bytes, expected 32", raw.len()))?;
    VerifyingKey::from_bytes(raw).map_err(|_| "ed25519 public key is not a curve point".to_string())
}

fn parse_public_line(line: &str) -> Result<VerifyingKey, SigError> {
    let mut fields = line.split_whitespace();
    let (Some(key_type), Some(encoded)) = (fields.next(), fields.next()) else {
        return Err(SigError::PublicKey("expected \"ssh-ed25519 BASE64 [comment]\"".into()));
    };
    if key_type != KEY_TYPE {
        return Err(SigError::PublicKey(format!(
            "key type {}, only {KEY_TYPE} is supported",
            shown_key_type(key_type.as_bytes())
        )));
    }
    let blob = STANDARD
        .decode(encoded)
        .map_err(|_| SigError::PublicKey("the key after ssh-ed25519 is not valid base64".into()))?;
    parse_public_blob(&blob).map_err(SigError::PublicKey)
}

/// Parses the decoded body of an OpenSSH private key file. Errors never quote the key's bytes.
fn parse_private(blob: &[u8]) -> Result<SigningKey, String> {
    let mut r = Reader::new(blob);
    if r.bytes(KEY_MAGIC.len())? != KEY_MAGIC {
        return Err("not an OpenSSH private key (no openssh-key-v1 header)".into());
    }
    let cipher = r.string("cipher")?;
    let kdf = r.string("kdf")?;
    let _kdf_options = r.string("kdf options")?;
    if cipher != b"none" || kdf != b"none" {
        return Err("the key is encrypted with a passphrase, which a node cannot type; \
                    remove it with `ssh-keygen -p -N ''`"
            .into());
    }
    let count = r.u32()?;
    if count != 1 {
        return Err(format!("holds {count} keys, expected 1"));
    }
    let public = parse_public_blob(r.string("public key")?)?;
    let private = r.string("private section")?;
    r.finish("key")?;

    let mut p = Reader::new(private);
    if p.u32()? != p.u32()? {
        return Err("check integers differ (damaged file)".into());
    }
    let key_type = p.string("key type")?;
    if key_type != KEY_TYPE.as_bytes() {
        return Err(format!("key type {}, only {KEY_TYPE} is supported", shown_key_type(key_type)));
    }
    let public_again = p.string("public key")?;
    let secret = p.string("secret key")?;
    let _comment = p.string("comment")?;
    let padding = p.rest();
    if padding.iter().enumerate().any(|(i, &b)| usize::from(b) != i + 1) {
        return Err("bad padding of the private section (damaged file)".into());
    }
    if secret.len() != 64 {
        return Err(format!("ed25519 secret key of {} bytes, expected 64", secret.len()));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&secret[..32]);
    let signing = SigningKey::from_bytes(&seed);
    let derived = signing.verifying_key();
    if public_again != public.as_bytes() || &secret[32..] != public.as_bytes() || derived != public {
        return Err("the private key does not match its public key (damaged file)".into());
    }
    Ok(signing)
}

fn put_string(buf: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("SSH wire strings are shorter than 4 GiB");
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
}

fn armor(blob: &[u8], label: &str) -> String {
    let mut encoded = STANDARD.encode(blob);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(ARMOR_WIDTH) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    // the private key's base64 is as secret as the key
    encoded.zeroize();
    text
}

fn dearmor(text: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut lines = text.lines().map(str::trim).skip_while(|l| l.is_empty());
    if lines.next() != Some(begin.as_str()) {
        return Err(format!("does not start with {begin:?}"));
    }
    let mut body = Zeroizing::new(String::new());
    let mut ended = false;
    for line in lines.by_ref() {
        if line == end {
            ended = true;
            break;
        }
        body.push_str(line);
    }
    if !ended {
        return Err(format!("no {end:?} line"));
    }
    if lines.any(|l| !l.is_empty()) {
        return Err(format!("text after {end:?}"));
    }
    // the decode error names a position only, never the bytes
    STANDARD.decode(body.as_bytes()).map_err(|e| format!("base64: {e}"))
}

/// Reads the SSH wire format (RFC 4251): uint32 big endian, string = uint32 length || bytes.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.data.len() < n {
            return Err(format!("truncated ({} bytes left, {n} needed)", self.data.len()));
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.u32().map_err(|e| format!("{what}: {e}"))? as usize;
        self.bytes(len).map_err(|e| format!("{what}: {e}"))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    fn finish(&self, what: &str) -> Result<(), String> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(format!("{what}: {} trailing bytes", self.data.len()))
        }
    }
}

/// The fingerprint of an OpenSSH public key line (`ssh-ed25519 AAAA... comment`) as `ssh-keygen -l`
/// prints it, "SHA256:..."; `None` when the line holds no base64 key.
pub fn public_fingerprint(line: &str) -> Option<String> {
    let blob = STANDARD.decode(line.split_whitespace().nth(1)?).ok()?;
    Some(format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob))))
}
