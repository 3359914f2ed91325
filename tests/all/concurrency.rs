//! Scripts running at the same time in one process, each in its own store on its own thread, as
//! a server runs many guests: traps on one thread must stay traps while other threads load and
//! drop modules. This runs `fnvm wast --jobs 2` in a child process, so that a trap the runtime
//! fails to catch kills the child, not the test binary.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn traps_are_caught_while_other_threads_load_and_drop_modules() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/all/scripts"));
    // Each script loads and drops modules and traps in every way the runtime catches.
    let scripts = ["traps.wast", "modules.wast"];
    let mut args: Vec<PathBuf> = Vec::new();
    for _ in 0..30 {
        args.extend(scripts.iter().map(|s| dir.join(s)));
    }
    // The race needs luck to show; three rounds make a miss unlikely when it is there.
    for round in 0..3 {
        let out = Command::new(env!("CARGO_BIN_EXE_fnvm"))
            .arg("wast")
            .arg("--jobs=2")
            .args(&args)
            .output()
            .expect("running fnvm");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "round {round}: fnvm wast --jobs=2 {}\nstdout (tail): {}\nstderr (tail): {}",
            match out.status.signal() {
                Some(sig) => format!("was killed by signal {sig}"),
                None => format!("exited with {}", out.status),
            },
            tail(&stdout),
            tail(&stderr),
        );
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
