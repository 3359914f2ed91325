//! Writes "Hello World\n" (12 bytes) to stdout: the Rust guest of the invocation benchmarks.
//! `print!` rather than `println!("Hello World!")`, which would be 13 bytes.

fn main() {
    print!("Hello World\n");
}
