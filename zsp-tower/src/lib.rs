//! # zsp-tower
//!
//! Tower layers for zsp: inbound verification and outbound token attachment.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use zsp_core;
