//! The sandbox a job runs in, set up in the child between fork and exec (only system calls there: no
//! allocation, no locks):
//!
//! 1. a new session and process group (the shim signals the whole group);
//! 2. when the daemon is not root, a user namespace mapping its own uid (so the rest is allowed);
//! 3. new mount, network, IPC and UTS namespaces; in the network namespace only loopback, brought up;
//! 4. the directories the node keeps private (its state, the socket's directory) covered by an empty
//!    tmpfs, the whole tree made read-only, and the job's writable directories (its run directory, for a
//!    train job also the node's privacy home) mounted back read-write, from clones taken before;
//! 5. no new privileges, every capability dropped from the bounding, ambient and process sets, then
//!    the configured job uid/gid when the daemon is root.
//!
//! [`probe`] runs the same setup on `/bin/true` so that the daemon knows at start whether the kernel
//! allows it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// mounted back read-write (they must exist)
    pub writable: Vec<PathBuf>,
    /// covered by an empty tmpfs
    pub hidden: Vec<PathBuf>,
    /// run the job as this uid/gid (only when the daemon is root)
    pub uid: Option<(u32, u32)>,
    /// the job's working directory, entered after the mounts (not with `Command::current_dir`, which
    /// would leave it on the covered tree)
    pub cwd: Option<PathBuf>,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with NUL"))
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Everything the child needs, prepared before fork.
struct Prepared {
    writable: Vec<CString>,
    hidden: Vec<CString>,
    /// directories to make inside the tmpfs so that the writable ones have a mount point
    mkdirs: Vec<CString>,
    uid_map: CString,
    gid_map: CString,
    cap_last: libc::c_ulong,
    as_uid: Option<(u32, u32)>,
    euid: u32,
    cwd: Option<CString>,
}

/// Puts `cmd` in the sandbox described by `spec` (applied when it is spawned).
pub fn apply(cmd: &mut Command, spec: &Spec) -> io::Result<()> {
    let euid = unsafe { libc::geteuid() };
    let egid = unsafe { libc::getegid() };
    let writable: Vec<PathBuf> = spec.writable.iter().map(|p| p.canonicalize()).collect::<io::Result<_>>()?;
    let hidden: Vec<PathBuf> =
        spec.hidden.iter().filter_map(|p| p.canonicalize().ok()).filter(|p| p != Path::new("/")).collect();
    let mut mkdirs = Vec::new();
    for w in &writable {
        if let Some(h) = hidden.iter().filter(|h| w.starts_with(h)).max_by_key(|h| h.as_os_str().len()) {
            let mut at = h.clone();
            for c in w.strip_prefix(h).unwrap_or(Path::new("")).components() {
                at.push(c);
                mkdirs.push(cstr(&at)?);
            }
        }
    }
    let cap_last =
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
    let p = Prepared {
        writable: writable.iter().map(|p| cstr(p)).collect::<io::Result<_>>()?,
        hidden: hidden.iter().map(|p| cstr(p)).collect::<io::Result<_>>()?,
        mkdirs,
        uid_map: CString::new(format!("{euid} {euid} 1")).unwrap_or_default(),
        gid_map: CString::new(format!("{egid} {egid} 1")).unwrap_or_default(),
        cap_last,
        as_uid: spec.uid.filter(|_| euid == 0),
        euid,
        cwd: spec.cwd.as_deref().map(cstr).transpose()?,
    };
    // SAFETY: the closure makes only system calls on memory prepared above (async-signal-safe)
    unsafe { cmd.pre_exec(move || enter(&p)) };
    Ok(())
}

fn write_file(path: &std::ffi::CStr, text: &std::ffi::CStr) -> io::Result<()> {
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let b = text.to_bytes();
        let n = libc::write(fd, b.as_ptr().cast(), b.len());
        libc::close(fd);
        if n != b.len() as isize {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn enter(p: &Prepared) -> io::Result<()> {
    unsafe {
        check(libc::setsid() as libc::c_long)?;
        if p.euid != 0 {
            check(libc::unshare(libc::CLONE_NEWUSER) as libc::c_long)?;
            write_file(c"/proc/self/setgroups", c"deny")?;
            write_file(c"/proc/self/uid_map", &p.uid_map)?;
            write_file(c"/proc/self/gid_map", &p.gid_map)?;
        }
        check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS)
            as libc::c_long)?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) as libc::c_long)?;
        loopback_up()?;
        // clones of the writable trees, taken before anything covers them
        let mut fds = [-1 as libc::c_int; 8];
        if p.writable.len() > fds.len() {
            return Err(io::Error::from_raw_os_error(libc::E2BIG));
        }
        for (i, w) in p.writable.iter().enumerate() {
            fds[i] = check(libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                w.as_ptr(),
                OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
            ))? as libc::c_int;
        }
        for h in &p.hidden {
            check(libc::mount(
                c"tmpfs".as_ptr(),
                h.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=0755,size=64k".as_ptr().cast(),
            ) as libc::c_long)?;
        }
        for d in &p.mkdirs {
            if libc::mkdir(d.as_ptr(), 0o755) != 0 && *libc::__errno_location() != libc::EEXIST {
                return Err(io::Error::last_os_error());
            }
        }
        let ro = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
        check(libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            AT_RECURSIVE,
            &ro as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ))?;
        for (i, w) in p.writable.iter().enumerate() {
            check(libc::syscall(
                libc::SYS_move_mount,
                fds[i],
                c"".as_ptr(),
                libc::AT_FDCWD,
                w.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            ))?;
            libc::close(fds[i]);
        }
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as libc::c_long)?;
        if let Some((uid, gid)) = p.as_uid {
            check(libc::setgroups(0, std::ptr::null()) as libc::c_long)?;
            check(libc::setgid(gid) as libc::c_long)?;
            check(libc::setuid(uid) as libc::c_long)?;
        }
        drop_capabilities(p.cap_last)?;
        if let Some(d) = &p.cwd {
            check(libc::chdir(d.as_ptr()) as libc::c_long)?;
        }
    }
    Ok(())
}

unsafe fn drop_capabilities(cap_last: libc::c_ulong) -> io::Result<()> {
    unsafe {
        for cap in 0..=cap_last {
            // EINVAL: a capability this kernel does not know; EPERM after setuid: already gone
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let h = Header { version: 0x2008_0522, pid: 0 };
        let d =
            [Data { effective: 0, permitted: 0, inheritable: 0 }, Data { effective: 0, permitted: 0, inheritable: 0 }];
        check(libc::syscall(libc::SYS_capset, &h as *const Header, d.as_ptr()))?;
    }
    Ok(())
}

/// Brings up `lo` in the new network namespace (jobs may use loopback, e.g. for a local tokenizer
/// server; nothing else exists there).
unsafe fn loopback_up() -> io::Result<()> {
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let mut rc = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(s, libc::SIOCSIFFLAGS, &req);
        }
        let err = io::Error::last_os_error();
        libc::close(s);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Whether this kernel lets the daemon build the sandbox: `Err` says why not.
pub fn probe() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("medtrain-sandbox-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make a probe directory: {e}"))?;
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "echo probe > ./w && ! touch /probe-outside 2>/dev/null"]);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let spec = Spec { writable: vec![dir.clone()], hidden: vec![], uid: None, cwd: Some(dir.clone()) };
    let r = apply(&mut cmd, &spec).map_err(|e| e.to_string()).and_then(|()| match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("a probe job in the sandbox ended with {s}")),
        Err(e) => Err(format!("the kernel refused the namespaces or mounts: {e}")),
    });
    let _ = std::fs::remove_dir_all(&dir);
    r
}
