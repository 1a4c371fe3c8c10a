//! Entry points for fuzz targets and their corpus regression tests. Not part of the API:
//! they expose parsers that are otherwise only reachable through a live token endpoint, so
//! the fuzzer can run them millions of times per minute without sockets.

use crate::outbound::endpoint::{parse_error, parse_success};
use crate::outbound::{AccessToken, FetchError};

/// Parses a token endpoint response body the way [`crate::TokenEndpoint`] does: a 2xx body as
/// an RFC 6749 §5.1 success (with `received_at` and the default lifetime), anything else as an
/// RFC 6749 §5.2 error.
pub fn parse_token_response(
    status: u16,
    body: &[u8],
    received_at: u64,
    default_lifetime: u64,
) -> Result<AccessToken, FetchError> {
    if (200..300).contains(&status) {
        parse_success(body, received_at, default_lifetime)
    } else {
        Err(parse_error(status, body))
    }
}
