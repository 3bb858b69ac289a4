//! The client side of the socket API: find the socket, send one request, read the answer.

use super::proto::VERSION;
use std::io::{BufRead, BufReader, Write};
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
        writeln!(self.writer, "{req}").map_err(|e| self.proto(e))
    }

    /// The next answer line; an error answer becomes [`ClientError::Refused`].
    pub fn read(&mut self) -> Result<serde_json::Value, ClientError> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(|e| self.proto(e))?;
        if n == 0 {
            return Err(self.proto("closed the connection without an answer"));
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|_| self.proto("answered with something that is not JSON"))?;
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
