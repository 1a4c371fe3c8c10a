//! Outbound: fetch, cache and attach ephemeral tokens.
