//! What one build may use: [`Limits`], its defaults and its validation. How each limit is
//! enforced is `sandbox.rs`'s (and `archive.rs`'s for the unpacked archive).

use std::time::Duration;

/// The resources of one build. Every field must be positive ([`Limits::validate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// CPU seconds per process of the build (`RLIMIT_CPU`: SIGXCPU, then SIGKILL 5 s later).
    /// A build is several processes (cargo, rustc, ...); [`Limits::wall`] bounds the whole.
    pub cpu_seconds: u64,
    /// Memory per process, as `RLIMIT_DATA` (private writable mappings: heap, stacks,
    /// anonymous memory). Not `RLIMIT_AS`: V8 (AssemblyScript's compiler) and Go reserve large
    /// address ranges they never touch, which `RLIMIT_AS` would count.
    pub memory_bytes: u64,
    /// Wall time of the whole build: past it, the sandbox and every process in it are killed.
    pub wall: Duration,
    /// Processes and threads in the sandbox at once (`RLIMIT_NPROC`, counted per sandbox: see
    /// `sandbox.rs`). Threads count: rustc, cargo, go and node use a few dozen together.
    pub processes: u32,
    /// The build's writable space: the size of the sandbox's tmpfs (`/tmp`, which holds the
    /// copy of the sources, the build directory, the caches and the module), and the largest
    /// file (`RLIMIT_FSIZE`). The tmpfs lives in memory.
    pub disk_bytes: u64,
    /// The build output kept: the first half and the last half of this many bytes.
    pub log_bytes: usize,
    /// The largest module accepted.
    pub artifact_bytes: u64,
    /// The largest upload (the source file or the compressed archive).
    pub source_bytes: u64,
    /// The most bytes an archive may unpack to (the sum of its files' sizes).
    pub unpacked_bytes: u64,
    /// The most entries (files and directories) an archive may hold.
    pub archive_entries: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            cpu_seconds: 300,
            memory_bytes: 2 << 30,
            wall: Duration::from_secs(300),
            processes: 512,
            disk_bytes: 1 << 30,
            log_bytes: 256 << 10,
            artifact_bytes: 64 << 20,
            source_bytes: 16 << 20,
            unpacked_bytes: 128 << 20,
            archive_entries: 10_000,
        }
    }
}

impl Limits {
    /// Checks that every limit leaves a build room to run: a message naming the first that
    /// does not.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(&str, u64, u64); 10] = [
            ("cpu_seconds", self.cpu_seconds, 1),
            ("memory_bytes", self.memory_bytes, 64 << 20),
            (
                "wall (ms)",
                self.wall.as_millis().min(u64::MAX as u128) as u64,
                1000,
            ),
            // bwrap, its init, the shell and one compiler with its threads.
            ("processes", self.processes.into(), 16),
            ("disk_bytes", self.disk_bytes, 1 << 20),
            ("log_bytes", self.log_bytes as u64, 1024),
            ("artifact_bytes", self.artifact_bytes, 8),
            ("source_bytes", self.source_bytes, 1),
            ("unpacked_bytes", self.unpacked_bytes, 1),
            ("archive_entries", self.archive_entries.into(), 1),
        ];
        for (name, value, min) in checks {
            if value < min {
                return Err(format!("{name} is {value}, less than the minimum {min}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_is_not() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let l = Limits {
            processes: 0,
            ..Limits::default()
        };
        assert!(l.validate().unwrap_err().contains("processes"));
        let l = Limits {
            wall: Duration::ZERO,
            ..Limits::default()
        };
        assert!(l.validate().unwrap_err().contains("wall"));
    }
}
