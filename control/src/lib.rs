//! fnvm's control plane: the API (Function, Release, Deployment), the metadata and artifact
//! stores, the packager, the scheduler, workers, triggers and the CLI client. Empty until the
//! control-plane work starts; this crate forbids unsafe code.

#![forbid(unsafe_code)]
