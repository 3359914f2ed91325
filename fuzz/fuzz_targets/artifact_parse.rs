//! The artifact loader against damaged and hostile artifacts. `Artifact::parse` and
//! `Module::from_artifact` must return an error or a module, never panic or crash.
//!
//! Random bytes never get past the magic, the compatibility hash and the sha256 checksum, so
//! most modes start from real artifacts (compiled once from the wat modules below) and the first
//! input byte picks what to do:
//!
//! - 0: the rest of the input, as is.
//! - 1: a real artifact with byte edits, checksum left alone: must be refused whenever the bytes
//!   changed (the checksum covers every byte but itself).
//! - 2: a real artifact whose metadata bytes are edited (overwrites, inserts, deletions), then
//!   re-assembled with correct lengths, compatibility hash and checksum: this reaches the
//!   metadata decoder and `ModuleInfo::check`.
//! - 3: like 2, but the metadata is replaced by the input bytes.
//! - 4: a real artifact whose header fields (features, lengths, code offset) are set from the
//!   input, with the hash and checksum then made right.
//!
//! A module that loads in modes 2 to 4 is also instantiated with host-made imports when it has
//! no start function: `check` promises the runtime can index the metadata without further
//! checks, and instantiation runs only host code (segment and global initialisation). Its
//! functions are never called: code paired with edited metadata can do anything.
#![no_main]

use arbitrary::{Result, Unstructured};
use fnvm_abi::artifact::compat_hash;
use fnvm_abi::{Artifact, CpuFeatures};
use fnvm_compiler::{compile, CompileOptions};
use fnvm_runtime::{LoadError, Module, Store};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const HEADER_SIZE: usize = 88;
const CODE_ALIGN: usize = 4096;

/// Exercises most metadata: every import kind, every export kind, active/passive/declared
/// element segments, active/passive data segments, globals of every type, a name section.
const RICH: &str = r#"(module $rich
  (type $t0 (func (param i32 i64 f32 f64) (result i32)))
  (type $t1 (func (result i64 i64)))
  (import "env" "f" (func $imp (type $t0)))
  (import "env" "t" (table 2 10 funcref))
  (import "env" "m" (memory 1 2))
  (import "env" "g" (global $gi i32))
  (import "env" "gm" (global $gm (mut f64)))
  (table $t 4 externref)
  (global $g1 (mut i64) (i64.const 7))
  (global $g2 f32 (f32.const 1.5))
  (global $g3 funcref (ref.func $a))
  (global $g4 i32 (global.get $gi))
  (func $a (export "a") (type $t0)
    (call $imp (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func $b (export "b") (type $t1)
    (local i32)
    (loop $l (br_if $l (i32.lt_u (local.tee 0 (i32.add (local.get 0) (i32.const 1))) (i32.const 10))))
    (i64.load (i32.const 8)) (global.get $g1))
  (func $c (param externref) (table.set $t (i32.const 1) (local.get 0))
    (drop (i32.div_u (i32.const 1) (global.get $gi))))
  (elem (i32.const 0) $a $b)
  (elem funcref (ref.func $c) (ref.null func))
  (elem declare func $b)
  (elem (table $t) (i32.const 2) externref (ref.null extern))
  (data (i32.const 16) "hello")
  (data (global.get $gi) "at g")
  (data "passive")
  (export "t" (table $t))
  (export "m" (memory 0))
  (export "g1" (global $g1))
  (export "gi" (global $gi)))"#;

/// A minimal module.
const SMALL: &str = r#"(module (func (export "f") (result i32) (i32.const 42)))"#;

struct Base {
    blob: Vec<u8>,
    features: CpuFeatures,
    meta: Vec<u8>,
    code: Vec<u8>,
}

fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        [RICH, SMALL]
            .iter()
            .map(|wat| {
                let wasm = wat::parse_str(wat).expect("seed wat");
                let options = CompileOptions {
                    parallel: false,
                    ..CompileOptions::default()
                };
                let blob = compile(&wasm, &options).expect("seed module compiles");
                let a = Artifact::parse(&blob, CpuFeatures::host()).expect("seed artifact");
                let u64_at = |o: usize| u64::from_le_bytes(blob[o..o + 8].try_into().unwrap());
                let meta_len = u64_at(32) as usize;
                Base {
                    features: a.features,
                    meta: blob[HEADER_SIZE..HEADER_SIZE + meta_len].to_vec(),
                    code: a.code.to_vec(),
                    blob: blob.clone(),
                }
            })
            .collect()
    })
}

fn checksum(blob: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&blob[..56]);
    h.update(&blob[HEADER_SIZE..]);
    h.finalize().into()
}

/// Header fields of an artifact.
struct Header {
    version: u32,
    reserved: u32,
    features: u64,
    meta_len: u64,
    code_off: u64,
    code_len: u64,
}

/// Lays out an artifact as `Artifact::serialize` does, with whatever header fields are given,
/// and a correct compatibility hash and checksum.
fn assemble(h: &Header, meta: &[u8], code: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&fnvm_abi::artifact::MAGIC);
    out.extend_from_slice(&h.version.to_le_bytes());
    out.extend_from_slice(&h.reserved.to_le_bytes());
    out.extend_from_slice(&h.features.to_le_bytes());
    out.extend_from_slice(&compat_hash(CpuFeatures(h.features)).to_le_bytes());
    out.extend_from_slice(&h.meta_len.to_le_bytes());
    out.extend_from_slice(&h.code_off.to_le_bytes());
    out.extend_from_slice(&h.code_len.to_le_bytes());
    out.extend_from_slice(&[0u8; 32]);
    out.extend_from_slice(meta);
    let code_off = (h.code_off as usize).clamp(out.len(), out.len() + 2 * CODE_ALIGN);
    out.resize(code_off, 0);
    out.extend_from_slice(code);
    let sum = checksum(&out);
    out[56..88].copy_from_slice(&sum);
    out
}

fn honest_header(features: CpuFeatures, meta_len: usize, code_len: usize) -> Header {
    Header {
        version: fnvm_abi::FORMAT_VERSION,
        reserved: 0,
        features: features.0,
        meta_len: meta_len as u64,
        code_off: ((HEADER_SIZE + meta_len).div_ceil(CODE_ALIGN) * CODE_ALIGN) as u64,
        code_len: code_len as u64,
    }
}

/// Applies edits from `u` to `bytes`: overwrites, xors, inserts, deletions, truncation.
fn mutate(u: &mut Unstructured<'_>, bytes: &mut Vec<u8>) -> Result<()> {
    let n = u.int_in_range(1..=8)?;
    for _ in 0..n {
        if u.is_empty() {
            break;
        }
        let len = bytes.len();
        let at = if len == 0 { 0 } else { u.choose_index(len)? };
        match u.int_in_range(0..=5)? {
            0 if len > 0 => bytes[at] = u.arbitrary()?,
            1 if len > 0 => bytes[at] ^= 1 << u.int_in_range(0..=7)?,
            // A little-endian u32 somewhere: lengths, indices and offsets are u32 in the codec.
            2 if len >= 4 => {
                let at = at.min(len - 4);
                let v: u32 = match u.int_in_range(0..=3)? {
                    0 => u.arbitrary()?,
                    1 => u32::MAX - u.int_in_range(0..=3)?,
                    2 => u.int_in_range(0..=16)?,
                    _ => u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
                        .wrapping_add(u.int_in_range(0..=2)? as u32)
                        .wrapping_sub(1),
                };
                bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            3 => {
                let k = u.int_in_range(1..=8)?;
                let ins: Vec<u8> = (0..k).map(|_| u.arbitrary().unwrap_or(0)).collect();
                bytes.splice(at..at, ins);
            }
            4 if len > 0 => {
                let k = u.int_in_range(1..=8)?.min(len - at);
                bytes.drain(at..at + k);
            }
            5 => bytes.truncate(at),
            _ => {}
        }
    }
    Ok(())
}

/// Parses and loads `blob`; on success, instantiates it (host code only) when it has no start
/// function.
fn load(blob: &[u8], instantiate: bool) {
    let parsed = Artifact::parse(blob, CpuFeatures::host());
    let loaded = Module::from_artifact(fnvm_fuzz::engine(), blob);
    assert_eq!(
        parsed.is_ok(),
        loaded.is_ok(),
        "Artifact::parse and Module::from_artifact disagree: {:?} vs {:?}",
        parsed.as_ref().err(),
        loaded.as_ref().err()
    );
    let module = match loaded {
        Ok(m) => m,
        Err(e) => {
            fnvm_fuzz::count(error_kind(&e), STATS_EVERY);
            return;
        }
    };
    fnvm_fuzz::count("loaded", STATS_EVERY);
    if !instantiate || module.info().start.is_some() {
        return;
    }
    let mut store = Store::new(fnvm_fuzz::engine());
    if let Some(imports) = fnvm_fuzz::dummy_imports(&mut store, &module) {
        match store.instantiate(&module, &imports) {
            Ok(_) => fnvm_fuzz::count("instantiated", STATS_EVERY),
            Err(_) => fnvm_fuzz::count("instantiation-failed", STATS_EVERY),
        }
    }
}

const STATS_EVERY: u64 = 200_000;

/// A short name for a load error, for `FNVM_FUZZ_STATS=1`.
fn error_kind(e: &LoadError) -> &'static str {
    use fnvm_abi::ArtifactError as A;
    match e {
        LoadError::Artifact(A::BadMagic) => "bad-magic",
        LoadError::Artifact(A::Truncated { .. }) => "truncated",
        LoadError::Artifact(A::Version { .. }) => "version",
        LoadError::Artifact(A::CompilerMismatch { .. }) => "compiler-mismatch",
        LoadError::Artifact(A::CpuFeatures(_)) => "cpu-features",
        LoadError::Artifact(A::Checksum) => "checksum",
        LoadError::Artifact(A::Decode(_)) => "decode",
        LoadError::Artifact(A::Metadata(_)) => "metadata",
        LoadError::Map(_) => "map",
        LoadError::VmctxTooLarge => "vmctx-too-large",
    }
}

fn run(data: &[u8]) -> Result<()> {
    fnvm_fuzz::count("input", STATS_EVERY);
    let mut u = Unstructured::new(data);
    let mode: u8 = u.arbitrary()?;
    if mode.is_multiple_of(8) {
        load(u.take_rest(), false);
        return Ok(());
    }
    let base = u.choose(bases())?;
    match mode % 8 {
        1 => {
            let mut blob = base.blob.clone();
            mutate(&mut u, &mut blob)?;
            let parsed = Artifact::parse(&blob, CpuFeatures::host());
            if blob != base.blob {
                assert!(parsed.is_err(), "an edited artifact passed its checksum");
            }
            drop(parsed);
            load(&blob, false);
        }
        2 | 5 | 6 => {
            let mut meta = base.meta.clone();
            mutate(&mut u, &mut meta)?;
            let h = honest_header(base.features, meta.len(), base.code.len());
            load(&assemble(&h, &meta, &base.code), true);
        }
        3 => {
            let meta = u.take_rest();
            let h = honest_header(base.features, meta.len(), base.code.len());
            load(&assemble(&h, meta, &base.code), true);
        }
        _ => {
            let mut h = honest_header(base.features, base.meta.len(), base.code.len());
            match u.int_in_range(0..=5)? {
                0 => h.features = u.arbitrary()?,
                1 => h.meta_len = u.arbitrary()?,
                2 => h.code_off = u.arbitrary()?,
                3 => h.code_len = u.arbitrary()?,
                4 => h.version = u.arbitrary()?,
                _ => h.reserved = u.arbitrary()?,
            }
            if u.arbitrary()? {
                // Small changes are likelier to get past the length checks.
                let d: i8 = u.arbitrary()?;
                h.meta_len = h.meta_len.wrapping_add(d as i64 as u64);
            }
            let mut code = base.code.clone();
            if u.arbitrary()? {
                mutate(&mut u, &mut code)?;
            }
            load(&assemble(&h, &base.meta, &code), true);
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
