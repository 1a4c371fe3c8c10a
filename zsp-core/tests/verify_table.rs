//! The verifier's decision table: each case asserts the exact `Denial` variant or acceptance.
//! Names cite the RFC clause or DESIGN invariant they check.
//! Through [`Verifier::verify`]; `verify_table_now.rs` runs the same cases through
//! `verify_now` and `finish`.

const VIA_VERIFY_NOW: bool = false;

include!("verify_table/cases.rs");
