//! base64url (RFC 4648 §5, no padding) as JOSE uses it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url; padding, whitespace and the standard alphabet are rejected.
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text)
}

/// Decodes into `buf`, returning the written length; for small fixed-size inputs on the hot
/// path (headers, signatures) without a heap allocation.
pub(crate) fn decode_into(text: &[u8], buf: &mut [u8]) -> Option<usize> {
    // decode_slice checks the output length itself, but an estimate avoids an error path for
    // inputs that obviously cannot fit.
    if text.len() / 4 * 3 + 3 > buf.len() {
        return None;
    }
    URL_SAFE_NO_PAD.decode_slice(text, buf).ok()
}
