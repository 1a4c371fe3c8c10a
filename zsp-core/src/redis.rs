//! Redis-backed replay guard and revocation, shared by all replicas.
