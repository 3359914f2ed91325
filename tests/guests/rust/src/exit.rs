//! Exit codes (proc_exit): prints `exiting with N` and exits with status N = argv[1].
fn main() {
    let code: i32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: exit CODE");
    println!("exiting with {code}");
    std::process::exit(code);
}
