//! The client side of the socket API: find the socket, send one request, read the answer.

use super::proto::VERSION;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the node daemon at {path}: {source} (is `medtrain node run` running? the socket is found by --socket or MEDTRAIN_SOCKET)")]
    Connect { path: String, source: std::io::Error },
    #[error("node daemon at {path}: {msg}")]
    Protocol { path: String, msg: String },
    /// the daemon answered with an error
    #[error("{0}")]
    Refused(String),
}

pub const DEFAULT_SOCKET: &str = "/run/medtrain/node.sock";

/// How long the client waits for an answer line.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// How often a followed log (`queue logs --follow`) sends a line while the job is quiet.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(15);

/// The longest answer line the client reads (the largest the daemon sends is a log chunk of 256 KiB
/// escaped, or a long audit trail).
const MAX_ANSWER: u64 = 64 << 20;

/// `--socket`, else `$MEDTRAIN_SOCKET`, else the default.
pub fn socket_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("MEDTRAIN_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let s = UnixStream::connect(path)
            .map_err(|source| ClientError::Connect { path: path.display().to_string(), source })?;
        // a daemon that never answers (or a socket something else listens on) ends the wait: the daemon
        // answers at once, and a followed log sends an empty chunk at least every HEARTBEAT
        s.set_read_timeout(Some(READ_TIMEOUT))
            .map_err(|source| ClientError::Connect { path: path.display().to_string(), source })?;
        let writer =
            s.try_clone().map_err(|source| ClientError::Connect { path: path.display().to_string(), source })?;
        Ok(Client { path: path.to_path_buf(), reader: BufReader::new(s), writer })
    }

    fn proto(&self, msg: impl std::fmt::Display) -> ClientError {
        ClientError::Protocol { path: self.path.display().to_string(), msg: msg.to_string() }
    }

    pub fn send(&mut self, mut req: serde_json::Value) -> Result<(), ClientError> {
        if let Some(o) = req.as_object_mut() {
            o.insert("version".into(), VERSION.into());
        }
        let Err(e) = writeln!(self.writer, "{req}") else { return Ok(()) };
        // a daemon that refuses the connection (too many open) answers before it reads the request and
        // closes: the write fails with a broken pipe, and the answer says why (found by a tester: "Broken
        // pipe (os error 32)" was all the user saw)
        if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) {
            if let Err(refused @ ClientError::Refused(_)) = self.read() {
                return Err(refused);
            }
        }
        Err(self.proto(e))
    }

    /// The next answer line; an error answer becomes [`ClientError::Refused`].
    pub fn read(&mut self) -> Result<serde_json::Value, ClientError> {
        let mut line = Vec::new();
        let n = (&mut self.reader).take(MAX_ANSWER + 1).read_until(b'\n', &mut line).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => self.proto(format!(
                "no answer within {} s (the request may still be carried out: see `medtrain queue list` \
                     before sending it again)",
                READ_TIMEOUT.as_secs()
            )),
            _ => self.proto(e),
        })?;
        if n == 0 {
            return Err(self.proto("closed the connection without an answer"));
        }
        if n as u64 > MAX_ANSWER {
            return Err(self.proto(format!("answered with a line longer than {} MiB", MAX_ANSWER >> 20)));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&line).map_err(|_| self.proto("answered with something that is not JSON"))?;
        if v["ok"] == true {
            Ok(v)
        } else {
            Err(ClientError::Refused(v["error"].as_str().unwrap_or("refused without a reason").to_string()))
        }
    }

    pub fn call(&mut self, req: serde_json::Value) -> Result<serde_json::Value, ClientError> {
        self.send(req)?;
        self.read()
    }
}
