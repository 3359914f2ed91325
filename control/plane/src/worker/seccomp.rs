//! The seccomp filter of the threads that run guest code (the invoker threads and the HTTP
//! reactor threads, which run short guests inline), and of the threads they start (name
//! resolution for outbound connections): defence in depth under the in-process backend's
//! isolation. Guest code is compiled by us and confined by guard pages; if a flaw in the
//! compiler or runtime ever let a guest run code of its choosing, these threads can still only
//! make the system calls serving a function needs: no new programs, no processes, no writable
//! files, no privileges, no kernel interfaces beyond them.
//!
//! The allowlist is data ([`ALLOWED`]), an entry per system call with why it is needed (the
//! calls were read off `strace -f -Y` of workers running the end-to-end tests: HTTP, WASI,
//! outbound TCP and TLS, traps, timeouts, pool resets). Anything else fails with `EPERM`
//! rather than killing the process: a call missing from the list costs one failed operation
//! (logged where it surfaces), not every tenant's requests. Three calls are allowed only in
//! part: `clone` only for threads (`CLONE_THREAD`), `openat` only read-only, `tgkill` only with
//! the KVM backend's kick signal to this process's threads (its deadline watchdog, started from
//! these threads, takes a vCPU out of `KVM_RUN`); `clone3`, whose flags a filter cannot read,
//! fails with `ENOSYS`, on which the C library falls back to `clone`.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A system call the filtered threads may make, and why.
#[derive(Clone, Copy, Debug)]
pub struct Allowed {
    /// Its number.
    pub nr: libc::c_long,
    /// Its name.
    pub name: &'static str,
    /// Why the threads need it.
    pub reason: &'static str,
}

macro_rules! allow {
    ($($name:ident: $reason:literal,)*) => {
        &[$(Allowed { nr: libc::$name, name: stringify!($name), reason: $reason },)*]
    };
}

/// The allowlist (besides `clone` for threads, read-only `openat` and the kick's `tgkill`, see
/// the module).
pub const ALLOWED: &[Allowed] = allow! {
    SYS_read: "request bodies, eventfd wake-ups, /proc and /sys files, resolver files",
    SYS_write: "responses, eventfd wake-ups (tokio, channels), logs to stderr",
    SYS_writev: "HTTP responses (hyper writes head and body together)",
    SYS_pread64: "/proc/self/pagemap (which pages a reset restores)",
    SYS_close: "connections, files the resolver read",
    SYS_lseek: "the resolver reading its files",
    SYS_newfstatat: "the resolver checking its files",
    SYS_fstat: "the C library checking files it opens",
    SYS_fcntl: "non-blocking sockets",
    SYS_ioctl: "PAGEMAP_SCAN (the pool's reset), FIONBIO",
    SYS_mmap: "memory: allocator, thread stacks, memory images",
    SYS_munmap: "memory: allocator, thread stacks",
    SYS_mprotect: "memory.grow and slot resets (guard pages), thread stack guards",
    SYS_madvise: "slot resets (dropping written pages), the allocator",
    SYS_mremap: "the allocator growing buffers",
    SYS_brk: "the allocator",
    SYS_rt_sigaction: "installing the trap handlers",
    SYS_rt_sigprocmask: "threads masking signals",
    SYS_rt_sigreturn: "returning from the trap handler (every guest trap)",
    SYS_sigaltstack: "the trap handler's stack, per thread",
    SYS_futex: "locks, condition variables, channels, thread parking",
    SYS_sched_yield: "waiting briefly for a free pool slot",
    SYS_sched_getaffinity: "the runtime sizing itself",
    SYS_clock_gettime: "clocks (WASI clock_time_get, CPU time per invocation)",
    SYS_getrusage: "the invoking thread's page faults (a slot reset skips the page-table scan without them)",
    SYS_clock_nanosleep: "WASI poll_oneoff sleeping",
    SYS_nanosleep: "sleeping",
    SYS_gettid: "thread ids (logs, runtime)",
    SYS_getpid: "the C library",
    SYS_getrandom: "WASI random_get, hash seeds, TLS",
    SYS_epoll_wait: "the reactor's event loop",
    SYS_epoll_pwait: "the reactor's event loop",
    SYS_epoll_ctl: "the reactor registering sockets",
    SYS_poll: "waiting on one socket (outbound connections, the resolver)",
    SYS_ppoll: "waiting on one socket",
    SYS_accept4: "accepting HTTP connections",
    SYS_socket: "outbound connections (host_tcp_connect, host_tls_connect), the resolver",
    SYS_connect: "outbound connections, the resolver",
    SYS_shutdown: "closing connections",
    SYS_setsockopt: "TCP_NODELAY, keep-alive",
    SYS_getsockopt: "a non-blocking connect's outcome (SO_ERROR)",
    SYS_getsockname: "socket addresses (egress checks)",
    SYS_getpeername: "socket addresses (egress checks)",
    SYS_sendto: "sockets, the resolver's queries",
    SYS_recvfrom: "sockets, the resolver's answers",
    SYS_sendmsg: "sockets",
    SYS_recvmsg: "sockets",
    SYS_uname: "the resolver",
    SYS_prctl: "naming threads",
    SYS_rseq: "thread start (the C library)",
    SYS_set_robust_list: "thread start (the C library)",
    SYS_exit: "thread exit",
    SYS_exit_group: "the process exiting (a panic that aborts)",
};

/// Why applying the filter failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SeccompError {
    /// This architecture has no filter.
    #[error("no seccomp filter for this architecture ({0})")]
    Architecture(&'static str),
    /// Compiling the filter failed (a bug in the list).
    #[error("building the seccomp filter: {0}")]
    Build(String),
    /// The kernel refused it.
    #[error("installing the seccomp filter: {0}")]
    Install(String),
}

/// The two programs, compiled once: the allowlist, then `clone3` to `ENOSYS` (stacked filters
/// take the strictest verdict, so `clone3` gets `ENOSYS` though the first allows it).
fn programs() -> Result<&'static (BpfProgram, BpfProgram), SeccompError> {
    static PROGRAMS: OnceLock<Result<(BpfProgram, BpfProgram), SeccompError>> = OnceLock::new();
    PROGRAMS.get_or_init(build).as_ref().map_err(Clone::clone)
}

fn build() -> Result<(BpfProgram, BpfProgram), SeccompError> {
    let arch = std::env::consts::ARCH;
    let target = TargetArch::try_from(arch).map_err(|_| SeccompError::Architecture(arch))?;
    let build = |e: seccompiler::BackendError| SeccompError::Build(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|a| (a.nr, Vec::new())).collect();
    // Threads only: CLONE_THREAD set in the flags (the first argument).
    let thread = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
        libc::CLONE_THREAD as u64,
    )
    .map_err(build)?;
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![thread]).map_err(build)?],
    );
    // Read-only opens: no O_WRONLY, O_RDWR, O_CREAT or O_TRUNC in the flags (third argument).
    let writes = (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) as u64;
    let read_only = SeccompCondition::new(
        2,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(writes),
        0,
    )
    .map_err(build)?;
    rules.insert(
        libc::SYS_openat,
        vec![SeccompRule::new(vec![read_only]).map_err(build)?],
    );
    // The KVM kick: this process (first argument), the kick signal (third).
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u64;
    let this_process =
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, pid).map_err(build)?;
    let kick = fnvm_runtime::kvm::kick_signal() as u64;
    let kick_signal =
        SeccompCondition::new(2, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, kick).map_err(build)?;
    rules.insert(
        libc::SYS_tgkill,
        vec![SeccompRule::new(vec![this_process, kick_signal]).map_err(build)?],
    );
    // clone3 passes to the second filter, which answers ENOSYS.
    rules.insert(libc::SYS_clone3, Vec::new());
    let allowlist = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        target,
    )
    .map_err(build)?;
    let no_clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        target,
    )
    .map_err(build)?;
    let first: BpfProgram = allowlist.try_into().map_err(build)?;
    let second: BpfProgram = no_clone3.try_into().map_err(build)?;
    Ok((first, second))
}

/// Applies the filter to the calling thread (and every thread it starts from now on). It
/// cannot be removed.
pub fn apply_to_this_thread() -> Result<(), SeccompError> {
    let (allowlist, no_clone3) = programs()?;
    // The allowlist last: it forbids `seccomp` itself.
    for p in [no_clone3, allowlist] {
        seccompiler::apply_filter(p).map_err(|e| SeccompError::Install(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a new thread with the filter applied.
    fn filtered<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            apply_to_this_thread().expect("applying the filter");
            f()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn a_filtered_thread_cannot_start_programs_or_processes_or_write_files() {
        let (spawn, exec, write_open, fork) = filtered(|| {
            let spawn = std::process::Command::new("/bin/true").status();
            let path = c"/bin/true";
            let argv = [path.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            // SAFETY: valid NUL-terminated path and NULL-terminated argv/envp arrays; it fails.
            let exec = unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            let exec_errno = std::io::Error::last_os_error().raw_os_error();
            let write_open = std::fs::File::create(std::env::temp_dir().join("fnvm-seccomp-test"));
            // SAFETY: with the filter applied fork fails before creating anything; should it
            // not, the child leaves at once.
            let fork = unsafe { libc::fork() };
            if fork == 0 {
                // SAFETY: ends the child without running anything of the parent's.
                unsafe { libc::_exit(0) };
            }
            (
                spawn.is_err(),
                (exec, exec_errno),
                write_open.is_err(),
                fork,
            )
        });
        assert!(spawn, "a process was started");
        assert_eq!(exec, (-1, Some(libc::EPERM)));
        assert!(write_open, "a file was opened for writing");
        assert_eq!(fork, -1);
    }

    #[test]
    fn a_filtered_thread_still_does_what_serving_needs() {
        // (Listening is not among what these threads do: the socket is made outside.)
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        filtered(move || {
            // Threads (clone3 -> ENOSYS -> clone with CLONE_THREAD), and their own threads.
            let inner = std::thread::spawn(|| std::thread::spawn(|| 7).join().unwrap());
            assert_eq!(inner.join().unwrap(), 7);
            // Read-only files, memory, clocks, randomness, sockets.
            let online = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            assert!(online.contains("Seccomp:\t2"), "{online}");
            let v: Vec<u8> = vec![1; 8 << 20];
            assert_eq!(v.iter().map(|b| *b as usize).sum::<usize>(), 8 << 20);
            let _ = std::time::SystemTime::now();
            let mut buf = [0u8; 16];
            // SAFETY: a valid buffer of the stated length.
            let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), 16, 0) };
            assert_eq!(got, 16);
            let addr = listener.local_addr().unwrap();
            let client = std::net::TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().unwrap();
            use std::io::{Read, Write};
            (&client).write_all(b"ok").unwrap();
            let mut got = [0u8; 2];
            (&server).read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ok");
        });
    }

    #[test]
    fn a_filtered_thread_sends_only_the_kick_signal_and_only_to_its_own_process() {
        let kick = fnvm_runtime::kvm::kick_signal();
        let (own, other_signal, other_process) = filtered(move || {
            // SAFETY: a zeroed sigset filled by sigemptyset/sigaddset; blocking the kick
            // signal in this thread keeps it pending (it is discarded when the thread ends).
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, kick);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            let tgkill = |pid: libc::pid_t, sig: libc::c_int| {
                // SAFETY: a signal to this thread that is blocked (kick) or filtered out.
                let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, libc::gettid(), sig) };
                (r, std::io::Error::last_os_error().raw_os_error())
            };
            // SAFETY: getpid has no preconditions.
            let pid = unsafe { libc::getpid() };
            (
                tgkill(pid, kick).0,
                tgkill(pid, libc::SIGCHLD),
                tgkill(1, kick),
            )
        });
        assert_eq!(own, 0);
        assert_eq!(other_signal, (-1, Some(libc::EPERM)));
        assert_eq!(other_process, (-1, Some(libc::EPERM)));
    }

    #[test]
    fn every_entry_says_why() {
        assert!(ALLOWED.len() > 30);
        for a in ALLOWED {
            assert!(!a.reason.is_empty() && a.name.starts_with("SYS_"), "{a:?}");
        }
        let mut nrs: Vec<_> = ALLOWED.iter().map(|a| a.nr).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), ALLOWED.len(), "an entry twice");
    }
}
