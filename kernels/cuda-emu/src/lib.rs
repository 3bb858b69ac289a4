//! Runs medtrain's CUDA kernels on the CPU: a client of the emulator process that build.rs compiles
//! from kernels/src/cuda/emu/harness.cc (see its header for the protocol) with every .cu of the
//! backend. A test launches kernels by name with buffers and arguments, exactly as the backend's
//! plans launch them on a device, and gets the buffers back.
//!
//! The emulator runs out of process so that it can be built under a sanitizer (AddressSanitizer and
//! UndefinedBehaviorSanitizer, or ThreadSanitizer) without the test binary being built so; a kernel that
//! a sanitizer stops shows up as an error carrying the sanitizer's report.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

include!(concat!(env!("OUT_DIR"), "/emu_build.rs"));

/// Which build of the emulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Plain,
    /// AddressSanitizer + UndefinedBehaviorSanitizer: a missing bounds guard, a bad index
    Address,
    /// ThreadSanitizer: a missing `__syncthreads` (a data race on shared memory)
    Thread,
}

impl Flavor {
    /// The emulator's path, or why the compiler could not build this flavor.
    pub fn executable(self) -> Result<&'static str, &'static str> {
        match self {
            Flavor::Plain => PLAIN,
            Flavor::Address => ADDRESS,
            Flavor::Thread => THREAD,
        }
    }
}

/// One kernel argument: a buffer of the launch, a null pointer, or a value's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Buffer(u32),
    Null,
    Value(Vec<u8>),
}

/// A running emulator process; launches run one after another.
pub struct Emulator {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    stderr_path: std::path::PathBuf,
}

impl Emulator {
    /// Starts the emulator of `flavor`; `Err` says why it cannot (not built, or not started).
    pub fn start(flavor: Flavor) -> Result<Self, String> {
        let exe = flavor.executable().map_err(|e| format!("no {flavor:?} build of the emulator: {e}"))?;
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let stderr_path = std::env::temp_dir().join(format!(
            "medtrain-cuda-emu-{}-{}.stderr",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| format!("{}: {e}", stderr_path.display()))?;
        let mut child = Command::new(exe)
            // stop at the first report, so that it is the error of the launch that caused it
            .env("ASAN_OPTIONS", "abort_on_error=0:halt_on_error=1:detect_leaks=0")
            .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
            .env("TSAN_OPTIONS", "halt_on_error=1:report_signal_unsafe=0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {exe}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        Ok(Emulator { child, stdin, stdout, stderr_path })
    }

    /// Runs `kernel` on a grid of `grid` blocks of `block` threads with `args`, over `buffers`
    /// (updated in place with what the kernel left in them). `Err` carries the emulator's refusal
    /// (unknown kernel, arguments that do not match its signature) or, when the process died, what it
    /// printed (a sanitizer's report).
    pub fn launch(
        &mut self,
        kernel: &str,
        grid: u32,
        block: u32,
        buffers: &mut [Vec<u8>],
        args: &[Arg],
    ) -> Result<(), String> {
        let mut req = Vec::new();
        req.extend((kernel.len() as u32).to_le_bytes());
        req.extend(kernel.as_bytes());
        req.extend(grid.to_le_bytes());
        req.extend(block.to_le_bytes());
        req.extend((buffers.len() as u32).to_le_bytes());
        for b in buffers.iter() {
            req.extend((b.len() as u64).to_le_bytes());
            req.extend(b);
        }
        req.extend((args.len() as u32).to_le_bytes());
        for a in args {
            match a {
                Arg::Buffer(i) => {
                    req.push(b'P');
                    req.extend(i.to_le_bytes());
                }
                Arg::Null => {
                    req.push(b'P');
                    req.extend(u32::MAX.to_le_bytes());
                }
                Arg::Value(v) => {
                    req.push(b'V');
                    req.extend((v.len() as u32).to_le_bytes());
                    req.extend(v);
                }
            }
        }
        let stdin = self.stdin.as_mut().ok_or("the emulator's input is closed")?;
        if stdin.write_all(&req).and_then(|_| stdin.flush()).is_err() {
            return Err(self.died());
        }
        let mut len = [0u8; 4];
        if self.stdout.read_exact(&mut len).is_err() {
            return Err(self.died());
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > 0 {
            let mut msg = vec![0u8; len];
            return Err(match self.stdout.read_exact(&mut msg) {
                Ok(()) => String::from_utf8_lossy(&msg).into_owned(),
                Err(_) => self.died(),
            });
        }
        for b in buffers.iter_mut() {
            if self.stdout.read_exact(b).is_err() {
                return Err(self.died());
            }
        }
        Ok(())
    }

    /// The process is gone: its exit status and what it printed.
    fn died(&mut self) -> String {
        drop(self.stdin.take());
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        format!("the emulator died ({status}):\n{stderr}")
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}
