//! HTTP trigger misbehaving on purpose (no SDK): prints `not json` on stdout and exits 0, which
//! is not a response object, so the worker must answer 502.
fn main() {
    println!("not json");
}
