//! The sandbox every build runs in, and the enforcement of [`Limits`]: [`run`] starts a
//! language's build script ([`Job`]) under bubblewrap and turns what happened into an
//! [`Outcome`], then into a module or a [`BuildError`].
//!
//! Isolation (bubblewrap):
//! - `--unshare-all` plus an explicit `--unshare-user`: new user, pid, network (only a
//!   loopback of its own: nothing reaches the host's or anyone's sockets), ipc, uts and cgroup
//!   namespaces; `--disable-userns` (bwrap 0.8 and later) so that the build cannot nest
//!   further user namespaces (a nested one could not lift the limits, but is kernel surface);
//!   `--cap-drop ALL`; `--new-session` (no TIOCSTI into a terminal); `--die-with-parent`.
//! - The file system is built from nothing: `/usr` (and the `/bin`, `/lib*` links to it), the
//!   few `/etc` files the dynamic linker and `cc` need, a fresh `/proc` and `/dev`, the
//!   toolchain directories and the sources (`/src`) read-only, and one size-limited tmpfs at
//!   `/tmp`, the only writable place (bwrap's own root and `/dev`, RAM without a limit, are
//!   remounted read-only). No `/root`, `/home`, `/work`, data directory or socket.
//! - When the server runs as root, bwrap itself is started as uid/gid 65534 (nobody): bwrap
//!   maps the sandbox's user to the *host* user that started it, and RLIMIT_NPROC never
//!   applies to host root (the kernel exempts the init user), so a build mapped to root could
//!   fork without end. As nobody, even an escape from the namespaces lands as an unprivileged
//!   user.
//!
//! Limits: `prlimit` (util-linux), run inside the sandbox before the build script, sets
//! RLIMIT_NPROC, RLIMIT_CPU, RLIMIT_DATA, RLIMIT_FSIZE and RLIMIT_CORE. Setting RLIMIT_NPROC
//! there, after bwrap created the user namespace, is what makes the process limit per build:
//! since Linux 5.14 processes are counted per (user namespace, uid), and a limit set inside a
//! namespace is checked against that namespace's count, so concurrent builds (all running as
//! nobody) do not share one budget. The pid namespace makes the count exact and lets nothing
//! outlive the build: when the script ends, or when bwrap is killed, the kernel kills every
//! process left in it. Wall time is enforced here: past [`Limits::wall`], bwrap's process
//! group is killed (SIGKILL), which takes the pid namespace down with it. Output goes through a
//! pipe into a [`BoundedLog`]; the module comes back on another pipe, fd 3, which the build
//! script closes for the compiler, read up to [`Limits::artifact_bytes`].
//! Not done (yet): cgroups (a memory limit for the sandbox as a whole, CPU shares) and a
//! seccomp filter.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::log::{self, BoundedLog, LimitKind};
use crate::toolchains::SandboxTools;
use crate::{BuildError, Built, Language, Limits};

/// The host uid and gid builds run as when the server is root (nobody/nogroup).
pub(crate) const BUILD_UID: u32 = 65534;

/// How long to wait for the output pipes to close once the sandbox is gone.
const DRAIN: Duration = Duration::from_secs(10);

/// A language's build, ready to run.
#[derive(Debug)]
pub(crate) struct Job {
    /// The project directory on the host, bound read-only at `/src`.
    pub(crate) src: PathBuf,
    /// Toolchain directories: host path, path in the sandbox (read-only).
    pub(crate) binds: Vec<(PathBuf, &'static str)>,
    /// The environment of the build (on top of PATH, HOME, TMPDIR and LANG).
    pub(crate) env: Vec<(&'static str, String)>,
    /// PATH in the sandbox.
    pub(crate) path: &'static str,
    /// Shell commands run in `/tmp/build` (a copy of `/src`) without fd 3: the compiler.
    pub(crate) build: String,
    /// Shell commands run after a successful build: set `ARTIFACT` to the module's path.
    pub(crate) artifact: String,
}

/// The script around a job: copy the sources, build without fd 3, send the module on fd 3 (or,
/// when the build failed, a status line: see [`free_space`]).
/// `fail` messages start with `fnvm-build:`, which `log::reason` picks first.
fn script(job: &Job) -> String {
    format!(
        r#"set -u
umask 022
fail() {{ echo "fnvm-build: $*" >&2; exit 90; }}
mkdir -p /tmp/home /tmp/build || fail "cannot create the build directory"
cp -R /src/. /tmp/build/ || fail "cannot copy the sources into the build directory"
cd /tmp/build || fail "no build directory"
(
{build}
) 3>&-
status=$?
if [ "$status" -ne 0 ]; then
    # For the server, on the channel the build cannot write to: the free space left on /tmp,
    # which tells a full disk from a message that merely mentions one.
    printf 'fnvm-status %s %s\n' "$status" "$(stat -f -c '%a %S' /tmp 2>/dev/null)" >&3
    exit "$status"
fi
{artifact}
[ -f "$ARTIFACT" ] || fail "the build produced no module ($ARTIFACT)"
exec cat -- "$ARTIFACT" >&3
"#,
        build = job.build,
        artifact = job.artifact,
    )
}

/// How the sandbox ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// bwrap's exit status (the script's; 128 + n when it was killed by signal n).
    Exited(i32),
    /// bwrap itself was killed by this signal.
    Signaled(i32),
    /// Killed by us at the wall-time limit, when the sandbox held this many tasks.
    WallTime { tasks: Option<u64> },
}

/// What a sandboxed build left.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) ended: Ended,
    pub(crate) log: String,
    pub(crate) artifact: Vec<u8>,
    /// The module was larger than [`Limits::artifact_bytes`] (and `artifact` is cut).
    pub(crate) artifact_over: bool,
}

fn sandbox_err(what: &str, e: impl std::fmt::Display) -> BuildError {
    BuildError::Sandbox(format!("{what}: {e}"))
}

/// The `/`, `/etc` part of bwrap's command line: the host's system directories, read-only.
fn system_args(cmd: &mut Command) {
    cmd.args(["--ro-bind", "/usr", "/usr"]);
    // On merged-/usr systems /bin, /lib... are links into /usr: the same links; otherwise
    // the directories themselves.
    for dir in ["/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"] {
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(dir) {
                    cmd.arg("--symlink").arg(target).arg(dir);
                }
            }
            Ok(m) if m.is_dir() => {
                cmd.args(["--ro-bind", dir, dir]);
            }
            _ => {}
        }
    }
    // The dynamic linker's cache, and Debian's alternatives (/usr/bin/cc is a link through
    // /etc/alternatives). Nothing else of /etc: no passwd, no resolv.conf, no ssl.
    for f in [
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/alternatives",
    ] {
        cmd.args(["--ro-bind-try", f, f]);
    }
}

/// Runs `job` in a sandbox within `limits`. Errors are the sandbox's own failures (a missing
/// bwrap, a pipe that cannot be made); everything the build does is in the [`Outcome`].
pub(crate) fn run(tools: &SandboxTools, job: &Job, limits: &Limits) -> Result<Outcome, BuildError> {
    let (log_r, log_w) = io::pipe().map_err(|e| sandbox_err("creating a pipe", e))?;
    let (art_r, art_w) = io::pipe().map_err(|e| sandbox_err("creating a pipe", e))?;
    let log_w2 = log_w
        .try_clone()
        .map_err(|e| sandbox_err("creating a pipe", e))?;

    let mut cmd = Command::new(&tools.bwrap);
    cmd.env_clear()
        .env("PATH", job.path)
        .env("HOME", "/tmp/home")
        .env("TMPDIR", "/tmp")
        .env("LANG", "C.UTF-8");
    for (k, v) in &job.env {
        cmd.env(k, v);
    }
    cmd.args(["--unshare-all", "--unshare-user"]);
    if tools.disable_userns {
        cmd.arg("--disable-userns");
    }
    cmd.args([
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "fnvm-build",
    ]);
    system_args(&mut cmd);
    cmd.args(["--proc", "/proc", "--dev", "/dev"]);
    cmd.arg("--size")
        .arg(limits.disk_bytes.to_string())
        .args(["--tmpfs", "/tmp"]);
    cmd.arg("--ro-bind").arg(&job.src).arg("/src");
    for (host, inside) in &job.binds {
        cmd.arg("--ro-bind").arg(host).arg(inside);
    }
    // Read-only from here on: bwrap's root and /dev are tmpfs of the host's RAM without a size
    // limit, writable by the sandbox's user (as /dev/shm is) unless remounted: only /tmp, with
    // its size, may take writes. Device nodes (/dev/null...) still work on a read-only /dev.
    cmd.args(["--remount-ro", "/dev", "--remount-ro", "/"]);
    cmd.args(["--chdir", "/tmp"]);
    // The limits, set inside the namespaces (see the module's documentation for why).
    let cpu = limits.cpu_seconds;
    cmd.args(["--", "/usr/bin/prlimit"])
        .arg(format!("--nproc={}", limits.processes))
        .arg(format!("--cpu={cpu}:{}", cpu.saturating_add(5)))
        .arg(format!("--data={}", limits.memory_bytes))
        .arg(format!("--fsize={}", limits.disk_bytes))
        .arg("--core=0")
        .args(["--", "/bin/sh", "-c"])
        .arg(script(job));

    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log_w))
        .stderr(Stdio::from(log_w2))
        // Its own process group: the wall-time kill takes bwrap and its pid-1 helper at once.
        .process_group(0);
    if rustix::process::geteuid().is_root() {
        // std drops the supplementary groups too when it changes the uid of a root process.
        cmd.uid(BUILD_UID).gid(BUILD_UID);
    }
    let art_fd = art_w.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: it makes three plain system calls (fcntl, dup2,
    // prctl) on an integer it owns a copy of, allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            // The module's pipe becomes fd 3 (dup2 clears close-on-exec; a pipe that already
            // is fd 3 needs the flag cleared by hand).
            if art_fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(art_fd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            // If the server dies, bwrap dies (and, by --die-with-parent, the whole sandbox).
            // Set after the uid change, which would clear it.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }

    // The readers first: should starting one fail, no sandbox is running yet.
    let (log_tx, log_rx) = mpsc::channel();
    let log_bytes = limits.log_bytes;
    thread::Builder::new()
        .name("fnvm-build-log".into())
        .spawn(move || {
            let mut log = BoundedLog::new(log_bytes);
            let mut r = log_r;
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => log.push(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = log_tx.send(log.finish());
        })
        .map_err(|e| sandbox_err("starting a thread", e))?;
    let (art_tx, art_rx) = mpsc::channel();
    let cap = limits.artifact_bytes;
    thread::Builder::new()
        .name("fnvm-build-artifact".into())
        .spawn(move || {
            let mut wasm = Vec::new();
            // One byte more than allowed tells "too large" from "exactly the limit".
            let read = (&art_r).take(cap.saturating_add(1)).read_to_end(&mut wasm);
            let over = wasm.len() as u64 > cap;
            if over {
                wasm.truncate(cap as usize);
                // Drain, so that the writer is not blocked forever.
                let _ = io::copy(&mut (&art_r), &mut io::sink());
            }
            let _ = art_tx.send((read.is_ok(), wasm, over));
        })
        .map_err(|e| sandbox_err("starting a thread", e))?;

    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| sandbox_err(&format!("starting {}", tools.bwrap.display()), e))?;
    // The parent's copies of the write ends: the readers see EOF when the sandbox is gone
    // (or now, when the spawn failed and these are dropped on return).
    drop(cmd);
    drop(art_w);

    // Wait, up to the wall-time limit.
    let deadline = start + limits.wall;
    let ended = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                break match (status.code(), status.signal()) {
                    (Some(code), _) => Ended::Exited(code),
                    (None, Some(sig)) => Ended::Signaled(sig),
                    (None, None) => Ended::Exited(-1),
                }
            }
            Ok(None) if Instant::now() >= deadline => {
                // Counted before the kill: a build stuck with every process slot taken (a
                // fork bomb) is reported as such rather than as merely slow.
                let tasks = sandbox_tasks(child.id());
                kill(&mut child);
                break Ended::WallTime { tasks };
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill(&mut child);
                return Err(sandbox_err("waiting for bwrap", e));
            }
        }
    };
    let log = log_rx
        .recv_timeout(DRAIN)
        .map_err(|_| sandbox_err("reading the build output", "the pipe stayed open"))?;
    let (read_ok, artifact, artifact_over) = art_rx
        .recv_timeout(DRAIN)
        .map_err(|_| sandbox_err("reading the module", "the pipe stayed open"))?;
    Ok(Outcome {
        ended,
        log,
        artifact: if read_ok || artifact_over {
            artifact
        } else {
            Vec::new()
        },
        artifact_over,
    })
}

/// The number of tasks (threads included, as RLIMIT_NPROC counts them) in the pid namespace
/// of bwrap's child, found through /proc. `None` when it cannot be told.
fn sandbox_tasks(bwrap: u32) -> Option<u64> {
    let field = |pid: u32, name: &str| -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let init = pids
        .iter()
        .copied()
        .find(|&p| field(p, "PPid:") == Some(u64::from(bwrap)))?;
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).ok()?;
    let mut tasks = 0;
    for p in pids {
        if std::fs::read_link(format!("/proc/{p}/ns/pid"))
            .ok()
            .as_ref()
            == Some(&ns)
        {
            tasks += field(p, "Threads:").unwrap_or(1);
        }
    }
    Some(tasks)
}

/// Kills bwrap's process group (bwrap and its pid-1 helper; the pid namespace goes with the
/// latter) and reaps bwrap.
fn kill(child: &mut std::process::Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Less free space than this on the sandbox's tmpfs after a failure: the disk limit was hit.
const DISK_FULL: u64 = 2 << 20;

/// The free bytes of the sandbox's `/tmp` from the script's status line on fd 3,
/// `fnvm-status STATUS AVAIL_BLOCKS BLOCK_SIZE`.
fn free_space(fd3: &[u8]) -> Option<u64> {
    let line = std::str::from_utf8(fd3.strip_prefix(b"fnvm-status ")?).ok()?;
    let mut fields = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>().ok());
    let (blocks, size) = (fields.next()??, fields.next()??);
    Some(blocks.saturating_mul(size))
}

impl Outcome {
    /// The module, or why there is none.
    pub(crate) fn into_result(
        self,
        language: Language,
        limits: &Limits,
    ) -> Result<Built, BuildError> {
        let Outcome {
            ended,
            mut log,
            artifact,
            artifact_over,
        } = self;
        let limit = |what: String, mut log: String| {
            log.push_str(&format!("\n[fnvm: build stopped: {what}]\n"));
            Err(BuildError::Limit { what, log })
        };
        let code = match ended {
            Ended::WallTime { tasks } => {
                let full = tasks.is_some_and(|t| t * 10 >= u64::from(limits.processes) * 9);
                let what = if full {
                    format!(
                        "processes ({}): every one was in use when the wall time ({:?}) ran out",
                        limits.processes, limits.wall
                    )
                } else {
                    format!("wall time ({:?})", limits.wall)
                };
                return limit(what, log);
            }
            Ended::Signaled(sig) => {
                return Err(BuildError::Sandbox(format!(
                    "bwrap was killed by signal {sig}\n{log}"
                )))
            }
            // bwrap's own setup failures (no user namespaces, a bind source it cannot open)
            // are one line starting with "bwrap:", before anything of the build ran.
            Ended::Exited(1)
                if log.starts_with("bwrap: ") && log.trim_end().lines().count() == 1 =>
            {
                return Err(BuildError::Sandbox(log.trim_end().to_string()));
            }
            Ended::Exited(code) => code,
        };
        if code == 0 {
            if artifact_over {
                return limit(
                    format!("module size (more than {} bytes)", limits.artifact_bytes),
                    log,
                );
            }
            if !artifact.starts_with(b"\0asm") {
                return Err(BuildError::Failed {
                    reason: "the build produced a file that is not a WebAssembly module".into(),
                    log,
                });
            }
            return Ok(Built {
                wasm: artifact,
                log,
            });
        }
        // bwrap reports a script killed by signal n as 128 + n.
        let disk_full = free_space(&artifact).is_some_and(|free| free < DISK_FULL);
        let kind = match code - 128 {
            s if s == libc::SIGXCPU => Some(LimitKind::Cpu),
            s if s == libc::SIGXFSZ => Some(LimitKind::Disk),
            _ if disk_full => Some(LimitKind::Disk),
            _ => log::limit_hit(&log),
        };
        let what = match kind {
            Some(LimitKind::Cpu) => format!("CPU time ({} s per process)", limits.cpu_seconds),
            Some(LimitKind::Disk) => format!("disk space ({} bytes)", limits.disk_bytes),
            Some(LimitKind::Processes) => format!("processes ({})", limits.processes),
            Some(LimitKind::Memory) => {
                format!("memory ({} bytes per process)", limits.memory_bytes)
            }
            None => {
                let reason = log::reason(language, &log);
                if !log.ends_with('\n') && !log.is_empty() {
                    log.push('\n');
                }
                return Err(BuildError::Failed { reason, log });
            }
        };
        limit(what, log)
    }
}
