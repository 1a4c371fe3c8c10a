//! Helpers of the load benchmark, which is `benches/load.rs` (`cargo bench --manifest-path
//! loadbench/Cargo.toml`). See BENCHMARKS.md. Kept in the library so that
//! `cargo test --manifest-path loadbench/Cargo.toml` tests them.
#![forbid(unsafe_code)]

pub mod cpu;
pub mod paired;
pub mod wrk;
