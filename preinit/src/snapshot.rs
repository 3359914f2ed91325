//! The state an initialisation left: the linear memory as data segments (runs of non-zero
//! bytes, coalesced across short gaps, zero pages skipped: the memory starts zeroed anyway), the
//! memory's size, and the mutable globals' values.

use wasm_encoder::{ConstExpr, Ieee32, Ieee64};

/// A global's value in the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    I32(i32),
    I64(i64),
    /// Bits.
    F32(u32),
    /// Bits.
    F64(u64),
}

impl Value {
    /// The constant expression initialising a global to this value.
    pub fn const_expr(self) -> ConstExpr {
        match self {
            Value::I32(v) => ConstExpr::i32_const(v),
            Value::I64(v) => ConstExpr::i64_const(v),
            Value::F32(v) => ConstExpr::f32_const(Ieee32::new(v)),
            Value::F64(v) => ConstExpr::f64_const(Ieee64::new(v)),
        }
    }
}

/// The captured state.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Size of the memory in wasm pages.
    pub pages: u64,
    /// (offset, bytes) of the memory's non-zero contents, in increasing offsets.
    pub segments: Vec<(u32, Vec<u8>)>,
    /// Values of the mutable defined globals, in index order.
    pub globals: Vec<Value>,
}

/// Zero bytes shorter than this between two non-zero runs are kept in one segment (a segment
/// costs about 8 bytes of header and a little work at load).
const MIN_GAP: usize = 32;
/// More segments than this are merged with longer gaps (validators cap the count at 100 000).
const MAX_SEGMENTS: usize = 20_000;
/// Granule for skipping zeros: whole blocks of zeros are checked at once.
const BLOCK: usize = 4096;

/// The data segments holding `memory`'s non-zero bytes.
pub fn segments(memory: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let runs = nonzero_runs(memory);
    let mut gap = MIN_GAP;
    loop {
        let merged = merge(&runs, gap);
        if merged.len() <= MAX_SEGMENTS {
            return merged
                .into_iter()
                .map(|(s, e)| (s as u32, memory[s..e].to_vec()))
                .collect();
        }
        gap *= 4;
    }
}

/// Maximal runs [start, end) of non-zero bytes.
fn nonzero_runs(memory: &[u8]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut base = 0;
    for block in memory.chunks(BLOCK) {
        if block.iter().all(|&b| b == 0) {
            base += block.len();
            continue;
        }
        let mut i = 0;
        while i < block.len() {
            if block[i] == 0 {
                i += 1;
                continue;
            }
            let start = i;
            while i < block.len() && block[i] != 0 {
                i += 1;
            }
            let (s, e) = (base + start, base + i);
            match runs.last_mut() {
                // A run continuing across the block boundary.
                Some(last) if last.1 == s => last.1 = e,
                _ => runs.push((s, e)),
            }
        }
        base += block.len();
    }
    runs
}

fn merge(runs: &[(usize, usize)], gap: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(runs.len());
    for &(s, e) in runs {
        match out.last_mut() {
            Some(last) if s - last.1 < gap => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_skip_zeros_and_coalesce_short_gaps() {
        let mut m = vec![0u8; 3 * 65536];
        m[10] = 1;
        m[20] = 2; // 9 zeros between: same segment
        m[4095] = 3;
        m[4096] = 4; // across a block boundary
        m[70000] = 5;
        let s = segments(&m);
        assert_eq!(
            s,
            vec![
                (10, vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
                (4095, vec![3, 4]),
                (70000, vec![5])
            ]
        );
        assert!(segments(&[0; 65536]).is_empty());
    }

    #[test]
    fn many_runs_are_merged_under_the_cap() {
        let mut m = vec![0u8; 64 * 65536];
        for i in (0..m.len()).step_by(64) {
            m[i] = 1;
        }
        let s = segments(&m);
        assert!(s.len() <= MAX_SEGMENTS);
        let total: usize = s
            .iter()
            .map(|(_, b)| b.iter().filter(|&&b| b == 1).count())
            .sum();
        assert_eq!(total, m.len() / 64);
    }
}
