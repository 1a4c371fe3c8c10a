//! The HTTP side of DPoP with `http` types only: header names, reading proofs from a request,
//! reading nonces and nonce challenges from a response.

use http::{HeaderMap, HeaderName, header::WWW_AUTHENTICATE};

use crate::denial::Denial;

/// The `DPoP` request header carrying a proof (RFC 9449 §4.1).
pub const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The `DPoP-Nonce` response header carrying a server nonce (RFC 9449 §8).
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// Longest server nonce a client takes from a response; anything longer is ignored.
const MAX_NONCE_LEN: usize = 512;

/// Every `DPoP` header value of a request, for [`DpopVerifier::verify`](super::DpopVerifier::verify)
/// (which denies zero or several). A value that is not visible ASCII cannot be a compact JWS
/// and denies here.
///
/// ```
/// use http::HeaderMap;
/// use zsp_core::dpop::{DPOP, proof_header_values};
/// let mut headers = HeaderMap::new();
/// headers.append(DPOP, "a.b.c".parse().unwrap());
/// assert_eq!(proof_header_values(&headers).unwrap(), ["a.b.c"]);
/// ```
pub fn proof_header_values(headers: &HeaderMap) -> Result<Vec<&str>, Denial> {
    headers
        .get_all(DPOP)
        .iter()
        .map(|v| {
            v.to_str()
                .map_err(|_| Denial::InvalidDpopProof("DPoP header not ASCII"))
        })
        .collect()
}

/// The nonce in a response's `DPoP-Nonce` header, if there is exactly one and it has the
/// RFC 9449 §8.1 syntax (`1*NQCHAR`), so a client never echoes anything else into a proof.
///
/// ```
/// use http::HeaderMap;
/// use zsp_core::dpop::{DPOP_NONCE, response_nonce};
/// let mut headers = HeaderMap::new();
/// headers.insert(DPOP_NONCE, "eyJ7S_zG.eyJH0-Z.HX4w-7v".parse().unwrap());
/// assert_eq!(response_nonce(&headers), Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
/// ```
pub fn response_nonce(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(DPOP_NONCE).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let nonce = value.to_str().ok()?;
    // NQCHAR = %x21 / %x23-5B / %x5D-7E: visible ASCII without '"' and '\'.
    let valid = !nonce.is_empty()
        && nonce.len() <= MAX_NONCE_LEN
        && nonce
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E));
    valid.then_some(nonce)
}

/// Whether a response challenges with `DPoP error="use_dpop_nonce"` (RFC 9449 §8): the
/// client should retry once with the nonce from [`response_nonce`].
///
/// ```
/// use http::{HeaderMap, header::WWW_AUTHENTICATE};
/// use zsp_core::dpop::is_use_dpop_nonce;
/// let mut headers = HeaderMap::new();
/// headers.insert(WWW_AUTHENTICATE, r#"DPoP error="use_dpop_nonce", algs="ES256""#.parse().unwrap());
/// assert!(is_use_dpop_nonce(&headers));
/// ```
pub fn is_use_dpop_nonce(headers: &HeaderMap) -> bool {
    headers.get_all(WWW_AUTHENTICATE).iter().any(|v| {
        let Ok(text) = v.to_str() else { return false };
        let lower = text.to_ascii_lowercase();
        let dpop_scheme = lower.starts_with("dpop ") || lower.contains(", dpop ");
        dpop_scheme && (lower.contains("error=\"use_dpop_nonce\"") || lower.contains("error=use_dpop_nonce"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_with_forbidden_characters_or_duplicates_are_ignored() {
        let mut h = HeaderMap::new();
        h.insert(DPOP_NONCE, "has\"quote".parse().unwrap());
        assert_eq!(response_nonce(&h), None);
        h.insert(DPOP_NONCE, "has space".parse().unwrap());
        assert_eq!(response_nonce(&h), None);
        h.insert(DPOP_NONCE, "ok".parse().unwrap());
        h.append(DPOP_NONCE, "two".parse().unwrap());
        assert_eq!(response_nonce(&h), None);
        assert_eq!(response_nonce(&HeaderMap::new()), None);
    }

    #[test]
    fn only_dpop_nonce_challenges_count() {
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            r#"Bearer error="invalid_token""#.parse().unwrap(),
        );
        assert!(!is_use_dpop_nonce(&h));
        h.insert(
            WWW_AUTHENTICATE,
            r#"DPoP error="invalid_dpop_proof""#.parse().unwrap(),
        );
        assert!(!is_use_dpop_nonce(&h));
        h.insert(
            WWW_AUTHENTICATE,
            r#"Bearer realm="x", DPoP error="use_dpop_nonce""#.parse().unwrap(),
        );
        assert!(is_use_dpop_nonce(&h));
    }

    #[test]
    fn proof_values_are_all_returned() {
        let mut h = HeaderMap::new();
        assert!(proof_header_values(&h).unwrap().is_empty());
        h.append(DPOP, "a".parse().unwrap());
        h.append(DPOP, "b".parse().unwrap());
        assert_eq!(proof_header_values(&h).unwrap(), ["a", "b"]);
        h.append(DPOP, http::HeaderValue::from_bytes(b"\xff").unwrap());
        assert!(proof_header_values(&h).is_err());
    }
}
