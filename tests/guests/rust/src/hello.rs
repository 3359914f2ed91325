//! Hello world: one fd_write to stdout, then `_start` returns (exit status 0).
fn main() {
    println!("Hello Rust!");
}
