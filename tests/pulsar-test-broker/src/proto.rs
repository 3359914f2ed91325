//! The Pulsar wire protocol's protobuf types, generated at build time by prost-build from the
//! vendored `proto/PulsarApi.proto` (Apache License 2.0, copied from the pulsar crate 6.9.1).

#![allow(missing_docs, missing_debug_implementations, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/pulsar.proto.rs"));
