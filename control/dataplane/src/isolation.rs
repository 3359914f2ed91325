//! How a function is isolated: in process ([`Isolation::Process`], the runtime's instance pool:
//! guard pages and signal handlers) or in a KVM micro-VM ([`Isolation::Vm`], the runtime's
//! `KvmBackend`: the same artifact and hostcalls in a VM with no guest OS). A runner on the VM
//! backend is made with [`Runner::kvm`], which fails with [`SetupError::Kvm`] where `/dev/kvm`
//! is missing or unusable. [`AnyModule`] is a module prepared on either backend together with
//! the runner it runs on, for a server that holds functions of both kinds.

use crate::invoke::{Invocation, InvokeError, Outcome, PreparedModule, Runner, SetupError};
use crate::ArtifactCache;
use fnvm_runtime::kvm::{Kvm, KvmBackend, KvmBackendConfig, KVM_PATH};
use fnvm_runtime::{Engine, EngineConfig, InstancePool};
use std::path::PathBuf;
use std::sync::Arc;

/// The isolation a function runs under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// In the server's process, in a pooled instance (guard pages, signal handlers).
    #[default]
    Process,
    /// In a KVM micro-VM of its own (needs `/dev/kvm`).
    Vm,
}

impl Isolation {
    /// The setting's name: `process` or `vm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Process => "process",
            Isolation::Vm => "vm",
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An isolation name that is neither `process` nor `vm`.
#[derive(Debug, thiserror::Error)]
#[error("unknown isolation {0:?}: expected \"process\" or \"vm\"")]
pub struct UnknownIsolation(pub String);

impl std::str::FromStr for Isolation {
    type Err = UnknownIsolation;

    fn from_str(s: &str) -> Result<Isolation, UnknownIsolation> {
        match s {
            "process" => Ok(Isolation::Process),
            "vm" => Ok(Isolation::Vm),
            other => Err(UnknownIsolation(other.to_string())),
        }
    }
}

/// Settings of a [`Runner`] on the KVM backend.
#[derive(Clone, Debug, Default)]
pub struct KvmRunnerConfig {
    /// The KVM device: `None` is `$FNVM_KVM_DEVICE` if set (tests point it at a missing
    /// device), else `/dev/kvm`.
    pub device: Option<PathBuf>,
    /// The engine modules are loaded with: `None` makes one without an epoch ticker (the
    /// backend's watchdog enforces deadlines); a server passes its in-process runner's, so
    /// both share compiled artifacts.
    pub engine: Option<Engine>,
    /// The backend: VMs alive at once, their caps, resets.
    pub backend: KvmBackendConfig,
}

impl Runner<KvmBackend> {
    /// A runner whose invocations run in KVM micro-VMs, caching compiled artifacts in
    /// `cache`. Fails with [`SetupError::Kvm`] when `/dev/kvm` cannot be opened or lacks what
    /// the backend needs.
    pub fn kvm(
        config: KvmRunnerConfig,
        cache: ArtifactCache,
    ) -> Result<Runner<KvmBackend>, SetupError> {
        let device = config
            .device
            .or_else(|| std::env::var_os("FNVM_KVM_DEVICE").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(KVM_PATH));
        let kvm = Kvm::open_path(&device).map_err(SetupError::Kvm)?;
        let engine = match config.engine {
            Some(e) => e,
            None => Engine::new(EngineConfig {
                max_memory_pages: config.backend.vm.max_memory_pages,
                max_table_elements: config.backend.vm.max_table_elements,
                epoch_tick: None,
                ..EngineConfig::default()
            })?,
        };
        let backend =
            KvmBackend::new(&engine, &kvm, config.backend).map_err(SetupError::KvmBackend)?;
        Ok(Runner::with_backend(backend, cache))
    }
}

/// A module prepared on one of the two backends, with the runner that invokes it.
#[derive(Clone, Debug)]
pub enum AnyModule {
    /// On the in-process pool.
    Process(Arc<Runner<InstancePool>>, PreparedModule<InstancePool>),
    /// On the KVM backend.
    Vm(Arc<Runner<KvmBackend>>, PreparedModule<KvmBackend>),
}

impl AnyModule {
    /// Where its invocations run.
    pub fn isolation(&self) -> Isolation {
        match self {
            AnyModule::Process(..) => Isolation::Process,
            AnyModule::Vm(..) => Isolation::Vm,
        }
    }

    /// Size in bytes of the module as uploaded.
    pub fn size(&self) -> u64 {
        match self {
            AnyModule::Process(_, m) => m.size(),
            AnyModule::Vm(_, m) => m.size(),
        }
    }

    /// Host memory the prepared module holds, shared by its instances.
    pub fn resident_bytes(&self) -> usize {
        match self {
            AnyModule::Process(_, m) => m.resident_bytes(),
            AnyModule::Vm(_, m) => m.resident_bytes(),
        }
    }

    /// Runs it once in a fresh instance of its backend: [`Runner::invoke_then`].
    pub fn invoke_then(
        &self,
        inv: Invocation,
        deliver: impl FnOnce(Outcome),
    ) -> Result<(), InvokeError> {
        match self {
            AnyModule::Process(r, m) => r.invoke_then(m, inv, deliver),
            AnyModule::Vm(r, m) => r.invoke_then(m, inv, deliver),
        }
    }

    /// Runs it once in a fresh instance of its backend: [`Runner::invoke`].
    pub fn invoke(&self, inv: Invocation) -> Result<Outcome, InvokeError> {
        match self {
            AnyModule::Process(r, m) => r.invoke(m, inv),
            AnyModule::Vm(r, m) => r.invoke(m, inv),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_names_round_trip() {
        for i in [Isolation::Process, Isolation::Vm] {
            assert_eq!(i.as_str().parse::<Isolation>().unwrap(), i);
        }
        assert!("container".parse::<Isolation>().is_err());
        assert_eq!(Isolation::default(), Isolation::Process);
    }

    #[test]
    fn a_missing_kvm_device_is_a_clear_setup_error() {
        let config = KvmRunnerConfig {
            device: Some(PathBuf::from("/nonexistent/kvm")),
            ..KvmRunnerConfig::default()
        };
        let cache = ArtifactCache::new(std::env::temp_dir().join("fnvm-isolation-unused"));
        let e = Runner::kvm(config, cache).unwrap_err();
        assert!(matches!(e, SetupError::Kvm(_)), "{e:?}");
        let text = e.to_string();
        assert!(text.starts_with("isolation vm needs /dev/kvm: "), "{text}");
        assert!(text.contains("/nonexistent/kvm"), "{text}");
    }
}
