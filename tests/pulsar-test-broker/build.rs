//! Generates the Pulsar protocol types from the vendored `proto/PulsarApi.proto` with prost-build
//! (needs `protoc`; scripts/setup.sh installs Debian's `protobuf-compiler`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/PulsarApi.proto");
    prost_build::compile_protos(&["proto/PulsarApi.proto"], &["proto/"])?;
    Ok(())
}
