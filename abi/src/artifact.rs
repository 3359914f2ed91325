//! The artifact: one position-independent blob per compiled module.
//!
//! ```text
//!   0  magic            8 bytes  "\0fnvmart"
//!   8  format version   u32
//!  12  reserved         u32 (0)
//!  16  cpu features     u64      bit set of `CpuFeatures` the code uses
//!  24  compat hash      u64      see `compat_hash`
//!  32  metadata length  u64
//!  40  code offset      u64      page aligned, after the metadata
//!  48  code length      u64
//!  56  checksum         32 bytes sha256 of bytes 0..56 and 88..end
//!  88  metadata         `ModuleInfo`, encoded with `codec`
//!      padding to a page boundary
//!      code             machine code; calls inside it are pc-relative, so it runs at any address
//! ```
//!
//! A blob from another format version, another compiler, for a CPU without the features it
//! needs, truncated or corrupted is refused with an [`ArtifactError`] naming which.
//!
//! Two numbers version an artifact. [`FORMAT_VERSION`] covers this file layout: the header above,
//! the metadata encoding and where the code goes. [`crate::VM_ABI_VERSION`] covers the contract
//! between the code and the runtime (vmctx layout, builtins, memory guard size, what compiled code
//! must do for the runtime).
//! Both go into the compatibility hash, with the compiler's identity and the CPU features.

use crate::codec::{CodecError, Decode, Encode, Reader, Writer};
use crate::module::{MetadataError, ModuleInfo};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Magic bytes at the start of every artifact.
pub const MAGIC: [u8; 8] = *b"\0fnvmart";
/// Version of the artifact file layout described above: header fields, the metadata encoding
/// (`ModuleInfo` with `codec`, tags included) and the code placement. Bump it on any change to
/// those. It does not cover the VM ABI the code itself relies on: that is
/// [`crate::VM_ABI_VERSION`]. It is stored at byte 8 and checked first, so a layout change is
/// reported as [`ArtifactError::Version`] rather than as a hash mismatch; it is also hashed by
/// [`compat_hash`].
pub const FORMAT_VERSION: u32 = 1;
const HEADER_SIZE: usize = 88;
const CODE_ALIGN: usize = 4096;

/// Why an artifact was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ArtifactError {
    /// Not an artifact at all.
    #[error("not an fnvm artifact (bad magic bytes)")]
    BadMagic,
    /// Shorter than its header says.
    #[error("artifact truncated: {have} bytes, {need} needed")]
    Truncated {
        /// Bytes present.
        have: u64,
        /// Bytes the header requires.
        need: u64,
    },
    /// Made for another artifact format.
    #[error("artifact format version {found}, this runtime reads version {expected}")]
    Version {
        /// Version in the artifact.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// Made by another compiler build (or the header is damaged).
    #[error("artifact made by another compiler version (compatibility hash {found:#018x}, expected {expected:#018x})")]
    CompilerMismatch {
        /// Hash in the artifact.
        found: u64,
        /// Hash this build computes for the artifact's features.
        expected: u64,
    },
    /// Needs CPU features this machine lacks.
    #[error("artifact needs CPU features this machine lacks: {0}")]
    CpuFeatures(String),
    /// Checksum mismatch.
    #[error("artifact corrupted: checksum mismatch")]
    Checksum,
    /// Metadata could not be decoded.
    #[error("artifact metadata: {0}")]
    Decode(#[from] CodecError),
    /// Metadata is inconsistent.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// x86_64 CPU features compiled code may rely on, as a bit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CpuFeatures(pub u64);

impl CpuFeatures {
    /// Every feature with its bit and its name as `is_x86_feature_detected!` and Cranelift spell it.
    pub const NAMES: [(u64, &'static str); 9] = [
        (1 << 0, "sse3"),
        (1 << 1, "ssse3"),
        (1 << 2, "sse4.1"),
        (1 << 3, "sse4.2"),
        (1 << 4, "popcnt"),
        (1 << 5, "bmi1"),
        (1 << 6, "bmi2"),
        (1 << 7, "lzcnt"),
        (1 << 8, "avx"),
    ];

    /// The features this machine has.
    pub fn host() -> CpuFeatures {
        let mut bits = 0;
        #[cfg(target_arch = "x86_64")]
        {
            let has = [
                std::arch::is_x86_feature_detected!("sse3"),
                std::arch::is_x86_feature_detected!("ssse3"),
                std::arch::is_x86_feature_detected!("sse4.1"),
                std::arch::is_x86_feature_detected!("sse4.2"),
                std::arch::is_x86_feature_detected!("popcnt"),
                std::arch::is_x86_feature_detected!("bmi1"),
                std::arch::is_x86_feature_detected!("bmi2"),
                std::arch::is_x86_feature_detected!("lzcnt"),
                std::arch::is_x86_feature_detected!("avx"),
            ];
            for (i, h) in has.iter().enumerate() {
                if *h {
                    bits |= Self::NAMES[i].0;
                }
            }
        }
        CpuFeatures(bits)
    }

    /// Whether feature `name` is in the set.
    pub fn has(self, name: &str) -> bool {
        Self::NAMES
            .iter()
            .any(|(bit, n)| *n == name && self.0 & bit != 0)
    }

    /// Names of the features in `self` but not in `other`.
    pub fn missing_from(self, other: CpuFeatures) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0 && other.0 & bit == 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// The compatibility hash for code generated by this compiler build for `features`: the first 8
/// bytes (little-endian) of sha256 over [`crate::COMPILER_VERSION`], [`FORMAT_VERSION`],
/// [`crate::VM_ABI_VERSION`] and the feature bits. Bumping either version, or changing the compiler
/// identity, thus makes every existing artifact's hash mismatch, and a cache recompiles it.
pub fn compat_hash(features: CpuFeatures) -> u64 {
    hash_of(
        crate::COMPILER_VERSION,
        FORMAT_VERSION,
        crate::VM_ABI_VERSION,
        features,
    )
}

/// `compat_hash` with every input explicit, so a test can vary each one.
fn hash_of(compiler: &str, format: u32, vm_abi: u32, features: CpuFeatures) -> u64 {
    let mut h = Sha256::new();
    h.update(compiler.as_bytes());
    h.update(format.to_le_bytes());
    h.update(vm_abi.to_le_bytes());
    h.update(features.0.to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// sha256 of a blob's header before the checksum field and of everything after it.
fn checksum(blob: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&blob[..56]);
    h.update(&blob[HEADER_SIZE..]);
    h.finalize().into()
}

/// A decoded, checked artifact borrowing its code from the blob.
#[derive(Debug)]
pub struct Artifact<'a> {
    /// CPU features the code needs.
    pub features: CpuFeatures,
    /// The module's metadata.
    pub module: ModuleInfo,
    /// Machine code.
    pub code: &'a [u8],
}

impl<'a> Artifact<'a> {
    /// Serialises metadata and code into one blob.
    pub fn serialize(features: CpuFeatures, module: &ModuleInfo, code: &[u8]) -> Vec<u8> {
        let mut w = Writer::new();
        module.encode(&mut w);
        let meta = w.finish();
        let code_offset = (HEADER_SIZE + meta.len()).div_ceil(CODE_ALIGN) * CODE_ALIGN;
        let mut out = Vec::with_capacity(code_offset + code.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&features.0.to_le_bytes());
        out.extend_from_slice(&compat_hash(features).to_le_bytes());
        out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        out.extend_from_slice(&(code_offset as u64).to_le_bytes());
        out.extend_from_slice(&(code.len() as u64).to_le_bytes());
        out.extend_from_slice(&[0u8; 32]);
        out.extend_from_slice(&meta);
        out.resize(code_offset, 0);
        out.extend_from_slice(code);
        let sum = checksum(&out);
        out[56..88].copy_from_slice(&sum);
        out
    }

    /// Parses and checks a blob for a machine with `host` features.
    pub fn parse(blob: &'a [u8], host: CpuFeatures) -> Result<Artifact<'a>, ArtifactError> {
        if blob.len() < 8 || blob[..8] != MAGIC {
            return Err(ArtifactError::BadMagic);
        }
        if blob.len() < HEADER_SIZE {
            return Err(ArtifactError::Truncated {
                have: blob.len() as u64,
                need: HEADER_SIZE as u64,
            });
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([blob[o], blob[o + 1], blob[o + 2], blob[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&blob[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(ArtifactError::Version {
                found: version,
                expected: FORMAT_VERSION,
            });
        }
        let features = CpuFeatures(u64_at(16));
        let expected = compat_hash(features);
        let found = u64_at(24);
        if found != expected {
            return Err(ArtifactError::CompilerMismatch { found, expected });
        }
        let missing = features.missing_from(host);
        if !missing.is_empty() {
            return Err(ArtifactError::CpuFeatures(missing.join(", ")));
        }
        let (meta_len, code_off, code_len) = (u64_at(32), u64_at(40), u64_at(48));
        // Lengths come from the blob: do every sum checked, before any slicing.
        let meta_end = (HEADER_SIZE as u64).checked_add(meta_len);
        let need = code_off.checked_add(code_len);
        let (Some(meta_end), Some(need)) = (meta_end, need) else {
            return Err(ArtifactError::Truncated {
                have: blob.len() as u64,
                need: u64::MAX,
            });
        };
        if (blob.len() as u64) < need || code_off < meta_end {
            return Err(ArtifactError::Truncated {
                have: blob.len() as u64,
                need: need.max(meta_end),
            });
        }
        if blob.len() as u64 != need {
            return Err(ArtifactError::Checksum);
        }
        if checksum(blob)[..] != blob[56..88] {
            return Err(ArtifactError::Checksum);
        }
        let meta = &blob[HEADER_SIZE..HEADER_SIZE + meta_len as usize];
        let mut r = Reader::new(meta);
        let module = ModuleInfo::decode(&mut r)?;
        if r.remaining() != 0 {
            return Err(ArtifactError::Decode(r.invalid("trailing metadata")));
        }
        let code = &blob[code_off as usize..need as usize];
        module.check(code.len())?;
        Ok(Artifact {
            features,
            module,
            code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::*;

    fn sample() -> Vec<u8> {
        let module = ModuleInfo {
            types: vec![FuncType::default()],
            funcs: vec![0],
            code: vec![CodeRange { offset: 0, len: 1 }],
            trampolines: vec![TypeTrampolines {
                array_call: CodeRange { offset: 1, len: 1 },
                host_call: CodeRange { offset: 2, len: 1 },
            }],
            ..ModuleInfo::default()
        };
        Artifact::serialize(CpuFeatures(0), &module, &[0xc3, 0xc3, 0xc3])
    }

    #[test]
    fn round_trip() {
        let blob = sample();
        let a = Artifact::parse(&blob, CpuFeatures(0)).unwrap();
        assert_eq!(a.code, &[0xc3, 0xc3, 0xc3]);
        assert_eq!(a.module.funcs, vec![0]);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let blob = sample();
        for cut in 0..blob.len() {
            assert!(
                Artifact::parse(&blob[..cut], CpuFeatures(0)).is_err(),
                "cut {cut}"
            );
        }
        for i in 0..blob.len() {
            let mut b = blob.clone();
            b[i] ^= 0x40;
            assert!(Artifact::parse(&b, CpuFeatures(0)).is_err(), "flip {i}");
        }
    }

    #[test]
    fn absurd_lengths_in_a_well_formed_header_are_refused() {
        for (field, value) in [
            (32, u64::MAX),
            (40, u64::MAX),
            (48, u64::MAX),
            (32, 1 << 40),
        ] {
            let mut blob = sample();
            blob[field..field + 8].copy_from_slice(&value.to_le_bytes());
            let sum = checksum(&blob);
            blob[56..88].copy_from_slice(&sum);
            assert!(
                Artifact::parse(&blob, CpuFeatures(0)).is_err(),
                "field {field}"
            );
        }
    }

    #[test]
    fn compat_hash_covers_both_versions_the_compiler_and_the_features() {
        let base = compat_hash(CpuFeatures(0));
        let (c, f, a) = (
            crate::COMPILER_VERSION,
            FORMAT_VERSION,
            crate::VM_ABI_VERSION,
        );
        assert_eq!(hash_of(c, f, a, CpuFeatures(0)), base);
        assert_ne!(hash_of(c, f + 1, a, CpuFeatures(0)), base, "format version");
        assert_ne!(hash_of(c, f, a + 1, CpuFeatures(0)), base, "VM ABI version");
        assert_ne!(hash_of("other", f, a, CpuFeatures(0)), base, "compiler");
        assert_ne!(hash_of(c, f, a, CpuFeatures(1)), base, "features");
    }

    #[test]
    fn version_compiler_and_cpu_mismatches_are_named() {
        let mut blob = sample();
        blob[8] = 99;
        assert!(matches!(
            Artifact::parse(&blob, CpuFeatures(0)),
            Err(ArtifactError::Version { found: 99, .. })
        ));
        let mut blob = sample();
        blob[24] ^= 1;
        assert!(matches!(
            Artifact::parse(&blob, CpuFeatures(0)),
            Err(ArtifactError::CompilerMismatch { .. })
        ));
        let module = ModuleInfo::default();
        let blob = Artifact::serialize(CpuFeatures(1 << 8), &module, &[]);
        let err = Artifact::parse(&blob, CpuFeatures(0)).unwrap_err();
        assert_eq!(err, ArtifactError::CpuFeatures("avx".into()));
    }
}
