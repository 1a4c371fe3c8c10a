//! Nothing here: the load benchmark is `benches/load.rs` (`cargo bench --manifest-path
//! loadbench/Cargo.toml`). See BENCHMARKS.md.
#![forbid(unsafe_code)]
