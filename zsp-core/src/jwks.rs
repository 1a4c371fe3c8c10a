//! Keys from a remote JWKS: fetch, cache, rotation, stale-if-error.
