//! The commands of the `amtsbuch` binary other than the HTTP service itself: the verifiers
//! (`verify` of a database, of an export or of a running server; `verify-proof`), the
//! benchmarks, and the progress display of long commands.
//!
//! They live apart from the HTTP modules because they share nothing with the request path
//! but the core crates: a verifier reads a file or a server's public routes, a benchmark
//! drives a store directly. `main.rs` parses the flags and calls in here.

pub mod bench;
pub mod offline;
pub mod progress;
pub mod remote;
pub mod verify;
