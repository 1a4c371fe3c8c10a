//! Inbound verification: `VerifyLayer` and `VerifyService`.
