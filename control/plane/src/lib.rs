//! fnvm's control plane: the resources of the product description (Functions, Releases,
//! Deployments, [`model`]), where they are kept (the metadata store, [`store`]; the artifact
//! store, [`artifacts`]), who may touch them ([`auth`]), how an upload becomes something a
//! worker can run ([`packager`]), the HTTP API that clients and the CLI talk to ([`api`]), the
//! worker's side of a deployment ([`worker`]: loading it through the data plane and reporting
//! it `READY`; serving it over HTTP), event delivery ([`delivery`]: asynchronous invocations,
//! retried, dead-lettered), and `fnvm serve` wiring the roles together ([`serve`]). The roles
//! (api, worker) talk only through the two stores, so that they can run on different machines.

pub mod api;
pub mod artifacts;
pub mod auth;
pub mod delivery;
pub mod metrics;
pub mod model;
pub mod packager;
pub mod router;
pub mod scheduler;
pub mod sealed;
pub mod serve;
pub mod store;
pub mod worker;
