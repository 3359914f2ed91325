// WASI guest programs in Go for fnvm's integration tests (tests/all/wasi.rs), one main package
// per directory. Built by scripts/guests.sh with GOOS=wasip1 GOARCH=wasm into
// target/guests/go/<name>.wasm. No dependencies beyond the standard library.
module fnvm.test/guests

go 1.21
