//! JWK SHA-256 thumbprints (RFC 7638), the `jkt` that binds a token to a key (RFC 9449 §6).
//!
//! Invariant: the hash input is built from exactly the required members of the key type, in
//! lexicographic order, with no whitespace (RFC 7638 §3.2–3.3); optional members (`kid`, `alg`,
//! `use`, …) never change a thumbprint, and a key lacking a required member has none.

use serde_json::Value;

/// Why a JWK has no thumbprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThumbprintError {
    /// Not a JSON object, or `kty` missing or not one of `EC`, `OKP`, `RSA`.
    #[error("unsupported key type")]
    UnsupportedKeyType,
    /// A required member is missing or not a string.
    #[error("required JWK member {0} missing or not a string")]
    MissingMember(&'static str),
}

/// A base64url SHA-256 JWK thumbprint (RFC 7638), as carried in `cnf.jkt`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jkt(String);

impl Jkt {
    /// The thumbprint text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The thumbprint text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
    /// Whether this thumbprint equals `other`, in constant time (a `cnf.jkt` is not secret,
    /// but the comparison should not be a timing oracle either).
    pub fn matches(&self, other: &str) -> bool {
        crate::crypto::ct_eq(self.0.as_bytes(), other.as_bytes())
    }
}

impl std::fmt::Display for Jkt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Jkt {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Jkt {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Jkt {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<Jkt> for String {
    fn from(j: Jkt) -> String {
        j.0
    }
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK.
///
/// The RFC's own example (§3.1):
///
/// ```
/// use zsp_core::dpop::jwk_thumbprint;
/// let jwk = serde_json::json!({
///     "kty": "RSA",
///     "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
///     "e": "AQAB",
///     "alg": "RS256",
///     "kid": "2011-04-29"
/// });
/// assert_eq!(
///     jwk_thumbprint(&jwk).unwrap().as_str(),
///     "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
/// );
/// ```
pub fn jwk_thumbprint(jwk: &Value) -> Result<Jkt, ThumbprintError> {
    let canonical = canonical_jwk(jwk)?;
    Ok(Jkt(crate::b64::encode(crate::crypto::sha256(
        canonical.as_bytes(),
    ))))
}

/// The RFC 7638 §3.2 canonical JSON of a public JWK: required members only, sorted, no
/// whitespace.
pub(crate) fn canonical_jwk(jwk: &Value) -> Result<String, ThumbprintError> {
    let obj = jwk.as_object().ok_or(ThumbprintError::UnsupportedKeyType)?;
    let kty = obj
        .get("kty")
        .and_then(Value::as_str)
        .ok_or(ThumbprintError::UnsupportedKeyType)?;
    let members: &[&'static str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        _ => return Err(ThumbprintError::UnsupportedKeyType),
    };
    let mut out = String::with_capacity(256);
    out.push('{');
    for (i, name) in members.iter().enumerate() {
        let value = obj
            .get(*name)
            .and_then(Value::as_str)
            .ok_or(ThumbprintError::MissingMember(name))?;
        if i > 0 {
            out.push(',');
        }
        // serde_json's string escaping is the minimal JSON escaping RFC 7638 §3.3 asks for;
        // serialising a &str cannot fail.
        out.push_str(&Value::from(*name).to_string());
        out.push(':');
        out.push_str(&Value::from(value).to_string());
    }
    out.push('}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7638_3_1_example() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            jwk_thumbprint(&jwk).unwrap().as_str(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn rfc7638_3_2_only_required_members_in_order() {
        let jwk = json!({"y": "Y", "x": "X", "kty": "EC", "crv": "P-256", "kid": "k", "use": "sig"});
        assert_eq!(
            canonical_jwk(&jwk).unwrap(),
            r#"{"crv":"P-256","kty":"EC","x":"X","y":"Y"}"#
        );
        let okp = json!({"x": "X", "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA"});
        assert_eq!(
            canonical_jwk(&okp).unwrap(),
            r#"{"crv":"Ed25519","kty":"OKP","x":"X"}"#
        );
    }

    #[test]
    fn keys_without_required_members_have_no_thumbprint() {
        assert_eq!(
            jwk_thumbprint(&json!({"kty": "EC", "crv": "P-256", "x": "X"})),
            Err(ThumbprintError::MissingMember("y"))
        );
        assert_eq!(
            jwk_thumbprint(&json!({"kty": "oct", "k": "AAAA"})),
            Err(ThumbprintError::UnsupportedKeyType)
        );
        assert_eq!(
            jwk_thumbprint(&json!("x")),
            Err(ThumbprintError::UnsupportedKeyType)
        );
    }
}
