//! Ending a vCPU's `KVM_RUN` from another thread: what makes a deadline hold for guest code
//! that never reaches an epoch check (compiled without them, or stuck where no check is).
//!
//! A [`Kicker`] does two things, as KVM's API documents for `immediate_exit`: it sets the
//! `immediate_exit` byte of the vCPU's kvm_run page, so that a `KVM_RUN` about to start returns
//! `EINTR` at once, and it sends [`kick_signal`] to the thread inside [`Vcpu::run`], if any, so
//! that a running guest is taken out of the CPU and `KVM_RUN` returns `EINTR`. The signal's
//! handler does nothing: its delivery is the point. Together they leave no window: a kick just
//! before the ioctl is caught by `immediate_exit`, one during it by the signal.
//!
//! The running thread is registered under the kick lock before the ioctl and removed after it,
//! so a signal only ever goes to a live thread that is in (or at the edge of) `KVM_RUN`; the
//! kvm_run pointer is dropped under the same lock when the vCPU goes, so a kicker that outlives
//! its vCPU does nothing.
//!
//! [`Vcpu::run`]: super::Vcpu::run

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};

/// The signal that takes a vCPU thread out of `KVM_RUN`: a real-time signal nothing else in
/// the process uses (glibc keeps the first two for itself, and `SIGRTMIN()` accounts for them).
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

/// Installs the do-nothing handler for [`kick_signal`] once per process (without `SA_RESTART`;
/// `KVM_RUN` is never restarted anyway).
fn install_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        extern "C" fn on_kick(_: libc::c_int) {}
        // SAFETY: a zeroed sigaction is a valid value to fill in; the handler is async-signal
        // safe (it does nothing); installing it replaces the default action (terminate) for a
        // signal only this module sends.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_kick as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = 0;
            libc::sigaction(kick_signal(), &action, std::ptr::null_mut());
        }
    });
}

/// The kvm_run page's `immediate_exit` byte of a live vCPU.
#[derive(Debug)]
struct ImmediateExit(*const AtomicU8);

// SAFETY: the pointer is into the vCPU's kvm_run mapping, which lives as long as the vCPU; it
// is only dereferenced under the kick lock while the vCPU is alive (the vCPU clears it, under
// the lock, before it is dropped), and the byte is only accessed atomically.
unsafe impl Send for ImmediateExit {}

#[derive(Debug, Default)]
struct KickState {
    /// `None` once the vCPU is gone.
    immediate_exit: Option<ImmediateExit>,
    /// The thread inside `Vcpu::run`, if any.
    running: Option<libc::pthread_t>,
    /// Kicked since the last [`KickTarget::take_kick`].
    kicked: bool,
}

/// The vCPU's side: registers the running thread, and learns whether it was kicked.
#[derive(Debug)]
pub(super) struct KickTarget {
    state: Arc<Mutex<KickState>>,
}

/// Takes a vCPU out of `KVM_RUN` from any thread (see the module).
#[derive(Clone, Debug)]
pub struct Kicker {
    state: Arc<Mutex<KickState>>,
}

fn lock(state: &Mutex<KickState>) -> MutexGuard<'_, KickState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl KickTarget {
    /// A target for the vCPU whose kvm_run page holds `immediate_exit`.
    ///
    /// # Safety
    /// `immediate_exit` must point into the vCPU's kvm_run mapping and stay valid until this
    /// target is dropped (drop it before the vCPU's descriptor).
    pub(super) unsafe fn new(immediate_exit: *mut u8) -> KickTarget {
        install_handler();
        let state = KickState {
            immediate_exit: Some(ImmediateExit(immediate_exit as *const AtomicU8)),
            ..KickState::default()
        };
        KickTarget {
            state: Arc::new(Mutex::new(state)),
        }
    }

    pub(super) fn kicker(&self) -> Kicker {
        Kicker {
            state: Arc::clone(&self.state),
        }
    }

    /// Runs `run` (the `KVM_RUN` ioctl) with this thread registered as the one to signal.
    pub(super) fn running<R>(&self, run: impl FnOnce() -> R) -> R {
        // SAFETY: pthread_self has no preconditions.
        lock(&self.state).running = Some(unsafe { libc::pthread_self() });
        let r = run();
        lock(&self.state).running = None;
        r
    }

    /// Whether the vCPU was kicked since the last call; clears the kick (and `immediate_exit`,
    /// so the next run enters the guest again).
    pub(super) fn take_kick(&self) -> bool {
        let mut s = lock(&self.state);
        if let Some(ImmediateExit(p)) = &s.immediate_exit {
            // SAFETY: valid while `immediate_exit` is Some (see `ImmediateExit`).
            unsafe { (**p).store(0, Ordering::SeqCst) };
        }
        std::mem::take(&mut s.kicked)
    }
}

impl Drop for KickTarget {
    fn drop(&mut self) {
        let mut s = lock(&self.state);
        s.immediate_exit = None;
        s.running = None;
    }
}

impl Kicker {
    /// Ends the vCPU's current or next `KVM_RUN` with `EINTR`, which its run loop sees as a
    /// kick (`Vcpu::take_kick`). Does nothing once the vCPU is gone.
    pub fn kick(&self) {
        let mut s = lock(&self.state);
        let Some(ImmediateExit(p)) = &s.immediate_exit else {
            return;
        };
        // SAFETY: valid while `immediate_exit` is Some (see `ImmediateExit`).
        unsafe { (**p).store(1, Ordering::SeqCst) };
        s.kicked = true;
        if let Some(thread) = s.running {
            // SAFETY: `thread` is registered only while it is inside `running`, under this
            // lock, so it is a live thread of this process; the signal's handler is installed
            // (KickTarget::new) and does nothing.
            unsafe { libc::pthread_kill(thread, kick_signal()) };
        }
    }
}
