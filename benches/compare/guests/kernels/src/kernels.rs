//! The benchmark kernels: each export takes a size or iteration count and returns a checksum,
//! so the work cannot be optimised away and both sides can be checked against each other.
//!
//! This file is compiled twice: into the wasm guest (`lib.rs` next to it) and natively into the
//! benchmark crate through `#[path]`. It must stay plain std Rust with no dependencies.

/// A 64-bit LCG (Knuth's MMIX constants); deterministic input for every kernel.
struct Lcg(u64);

impl Lcg {
    fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 32) as u32
    }
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// SHA-256 compression of whole 64-byte blocks (no padding: the buffer is a multiple of 64).
fn sha256_blocks(state: &mut [u32; 8], data: &[u8]) {
    for block in data.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *s = s.wrapping_add(v);
        }
    }
}

/// Bytes of the buffer `kernel_sha256` hashes each round.
pub const SHA256_BUF: usize = 64 * 1024;

/// SHA-256 compression over a 64 KiB LCG-filled buffer in linear memory, `rounds` times, each
/// round chaining on the previous state. Returns the first 8 bytes of the final state.
#[no_mangle]
pub extern "C" fn kernel_sha256(rounds: u32) -> u64 {
    let mut rng = Lcg(0x5eed);
    let buf: Vec<u8> = (0..SHA256_BUF).map(|_| rng.next_u32() as u8).collect();
    let mut state = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    for _ in 0..rounds {
        sha256_blocks(&mut state, &buf);
    }
    ((state[0] as u64) << 32) | state[1] as u64
}

/// Sorts `n` LCG-generated u32 values with the standard library's unstable sort and returns a
/// position-weighted sum of the result (which also catches an unsorted result).
#[no_mangle]
pub extern "C" fn kernel_sort(n: u32) -> u64 {
    let mut rng = Lcg(42);
    let mut v: Vec<u32> = (0..n).map(|_| rng.next_u32()).collect();
    v.sort_unstable();
    let mut sum = 0u64;
    let mut sorted = true;
    for (i, pair) in v.windows(2).enumerate() {
        sorted &= pair[0] <= pair[1];
        sum = sum.wrapping_add((pair[0] as u64).wrapping_mul(i as u64 + 1));
    }
    if let Some(last) = v.last() {
        sum = sum.wrapping_add(*last as u64);
    }
    if sorted {
        sum
    } else {
        0
    }
}

/// Multiplies two `n`x`n` f64 matrices (i-k-j loop order) and returns the bits of the sum of
/// the product's elements.
#[no_mangle]
pub extern "C" fn kernel_matmul(n: u32) -> u64 {
    let n = n as usize;
    let mut rng = Lcg(7);
    let mut gen = || (rng.next_u32() % 1000) as f64 / 1000.0;
    let a: Vec<f64> = (0..n * n).map(|_| gen()).collect();
    let b: Vec<f64> = (0..n * n).map(|_| gen()).collect();
    let mut c = vec![0.0f64; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            let row_b = &b[k * n..(k + 1) * n];
            let row_c = &mut c[i * n..(i + 1) * n];
            for j in 0..n {
                row_c[j] += aik * row_b[j];
            }
        }
    }
    c.iter().sum::<f64>().to_bits()
}

#[inline(never)]
fn fib(n: u32) -> u64 {
    if n < 2 {
        n as u64
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

/// Naive recursive Fibonacci: dominated by calls, so it shows per-call costs such as deadline
/// checks at function entries.
#[no_mangle]
pub extern "C" fn kernel_fib(n: u32) -> u64 {
    fib(n)
}
