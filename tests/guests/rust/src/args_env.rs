//! Arguments and environment (args_get, environ_get): prints argv[1..] one per line, then the
//! environment variables whose names start with `GUEST_`, sorted by name, as `NAME=VALUE`.
fn main() {
    for arg in std::env::args().skip(1) {
        println!("{arg}");
    }
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| name.starts_with("GUEST_"))
        .collect();
    vars.sort();
    for (name, value) in vars {
        println!("{name}={value}");
    }
}
