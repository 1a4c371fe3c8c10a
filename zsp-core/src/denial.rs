//! Why a request was refused, and what the client is told about it.
//!
//! A [`Denial`] carries the exact internal reason (for audit events and tests) and maps it to
//! what RFC 6750 §3 and RFC 9449 §7 say the client should see: an HTTP status, an `error` code
//! and a `WWW-Authenticate` challenge. Nothing else about the reason leaves the server.

use http::StatusCode;

/// The reason a token or request was refused. One variant per reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// No credentials were presented.
    #[error("no access token")]
    MissingToken,
    /// The request carries credentials in a form that is not allowed (two Authorization
    /// headers, a token in the query string, an unknown scheme).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The token exceeds the policy's size limit; it was not parsed.
    #[error("token larger than the size limit")]
    TokenTooLarge,
    /// Not a well-formed compact JWS (segments, base64url, JSON, UTF-8).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is `none`, symmetric without a configured secret, or unknown.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The header's `alg` is a real algorithm the policy does not allow.
    #[error("algorithm not allowed by policy")]
    AlgorithmNotAllowed,
    /// The header's `alg` differs from the algorithm the key is pinned to.
    #[error("algorithm does not match the key")]
    AlgorithmMismatch,
    /// No trusted key has the token's `kid` (after at most one refresh).
    #[error("unknown signing key")]
    UnknownKey,
    /// The header lists a `crit` extension this verifier does not understand (RFC 7515 §4.1.11).
    #[error("unsupported critical header")]
    UnsupportedCritical,
    /// The header `typ` is not an accepted access-token type.
    #[error("token type not accepted")]
    TypMismatch,
    /// The signature does not verify with the trusted key.
    #[error("invalid signature")]
    InvalidSignature,
    /// A required claim is absent.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    /// A claim is present but unusable (e.g. `exp` before `iat`).
    #[error("invalid claim {0}")]
    InvalidClaim(&'static str),
    /// `exp` has passed (beyond leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond leeway).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `exp − iat` exceeds the policy's maximum lifetime: a standing credential.
    #[error("token lifetime above the policy maximum")]
    LifetimeTooLong,
    /// `iss` is not a trusted issuer.
    #[error("untrusted issuer")]
    InvalidIssuer,
    /// `aud` does not name this service.
    #[error("wrong audience")]
    InvalidAudience,
    /// The token lacks scopes the route requires.
    #[error("insufficient scope, requires {required}")]
    InsufficientScope {
        /// The scopes the route requires, space-delimited as in the challenge.
        required: String,
    },
    /// No route rule matches the request and there is no default rule.
    #[error("no policy rule for this route")]
    RouteNotAllowed,
    /// The request's source address is outside the CIDRs the route allows.
    #[error("source address not allowed")]
    SourceNotAllowed,
    /// The route requires a sender-constrained (DPoP-bound) token.
    #[error("sender-constrained token required")]
    SenderConstraintRequired,
    /// The token was revoked.
    #[error("token revoked")]
    Revoked,
    /// A single-use token was presented again.
    #[error("single-use token replayed")]
    Replayed,
    /// The replay store is at capacity: new single-use tokens cannot be recorded safely.
    #[error("replay store full")]
    ReplayStoreFull,
    /// A store that must answer (replay, revocation) did not.
    #[error("{0} store unavailable")]
    StoreUnavailable(&'static str),
    /// The verifier has never obtained verification keys.
    #[error("verification keys unavailable")]
    KeysUnavailable,
    /// The DPoP proof is missing, malformed or fails a check of RFC 9449 §4.3; the reason
    /// says which (for audit events only).
    #[error("invalid DPoP proof: {0}")]
    InvalidDpopProof(&'static str),
    /// Nonces are required and the proof has none, or a stale, future or forged one
    /// (RFC 9449 §8); the response carries a fresh `DPoP-Nonce`.
    #[error("DPoP nonce required")]
    UseDpopNonce,
    /// A DPoP-bound token (`cnf.jkt`) was presented as a bearer token (RFC 9449 §7.2).
    #[error("DPoP-bound token presented as bearer")]
    DpopBoundTokenAsBearer,
}

impl Denial {
    /// The HTTP status the response carries.
    pub fn status(&self) -> StatusCode {
        use Denial::*;
        match self {
            InvalidRequest(_) => StatusCode::BAD_REQUEST,
            InsufficientScope { .. } | RouteNotAllowed | SourceNotAllowed => StatusCode::FORBIDDEN,
            ReplayStoreFull | StoreUnavailable(_) | KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 §3.1 error code, or `None` when the response carries no `error` attribute
    /// (no credentials were sent, or the failure is the server's).
    pub fn error_code(&self) -> Option<&'static str> {
        use Denial::*;
        match self {
            MissingToken => None,
            ReplayStoreFull | StoreUnavailable(_) | KeysUnavailable => None,
            InvalidRequest(_) => Some("invalid_request"),
            InvalidDpopProof(_) => Some("invalid_dpop_proof"),
            UseDpopNonce => Some("use_dpop_nonce"),
            InsufficientScope { .. } | RouteNotAllowed | SourceNotAllowed => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// A short, stable, machine-readable reason for audit events and metrics. Never sent to
    /// the client.
    pub fn reason(&self) -> &'static str {
        use Denial::*;
        match self {
            MissingToken => "missing_token",
            InvalidRequest(_) => "invalid_request",
            TokenTooLarge => "token_too_large",
            Malformed(_) => "malformed",
            UnsupportedAlgorithm => "unsupported_algorithm",
            AlgorithmNotAllowed => "algorithm_not_allowed",
            AlgorithmMismatch => "algorithm_mismatch",
            UnknownKey => "unknown_key",
            UnsupportedCritical => "unsupported_critical",
            TypMismatch => "typ_mismatch",
            InvalidSignature => "invalid_signature",
            MissingClaim(_) => "missing_claim",
            InvalidClaim(_) => "invalid_claim",
            Expired => "expired",
            NotYetValid => "not_yet_valid",
            IssuedInFuture => "issued_in_future",
            LifetimeTooLong => "lifetime_too_long",
            InvalidIssuer => "invalid_issuer",
            InvalidAudience => "invalid_audience",
            InsufficientScope { .. } => "insufficient_scope",
            RouteNotAllowed => "route_not_allowed",
            SourceNotAllowed => "source_not_allowed",
            SenderConstraintRequired => "sender_constraint_required",
            Revoked => "revoked",
            Replayed => "replayed",
            ReplayStoreFull => "replay_store_full",
            StoreUnavailable(_) => "store_unavailable",
            KeysUnavailable => "keys_unavailable",
            InvalidDpopProof(_) => "invalid_dpop_proof",
            UseDpopNonce => "use_dpop_nonce",
            DpopBoundTokenAsBearer => "dpop_bound_token_as_bearer",
        }
    }

    /// The `WWW-Authenticate` value for the `Bearer` scheme (RFC 6750 §3), or `None` for
    /// server-side failures (503), which carry no challenge.
    ///
    /// ```
    /// use zsp_core::Denial;
    /// assert_eq!(Denial::MissingToken.www_authenticate(None).unwrap(), "Bearer");
    /// assert_eq!(
    ///     Denial::InsufficientScope { required: "orders:write".into() }
    ///         .www_authenticate(Some("api"))
    ///         .unwrap(),
    ///     r#"Bearer realm="api", error="insufficient_scope", scope="orders:write""#
    /// );
    /// ```
    pub fn www_authenticate(&self, realm: Option<&str>) -> Option<String> {
        self.challenge("Bearer", realm)
    }

    /// The challenge for `scheme` (`Bearer` or `DPoP`), with optional extra auth-params such
    /// as `algs` for DPoP.
    pub fn challenge(&self, scheme: &str, realm: Option<&str>) -> Option<String> {
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            return None;
        }
        let mut params: Vec<String> = Vec::with_capacity(3);
        if let Some(realm) = realm {
            params.push(format!("realm=\"{}\"", quote_safe(realm)));
        }
        if let Some(code) = self.error_code() {
            params.push(format!("error=\"{code}\""));
        }
        if let Denial::InsufficientScope { required } = self {
            params.push(format!("scope=\"{}\"", quote_safe(required)));
        }
        Some(if params.is_empty() {
            scheme.to_owned()
        } else {
            format!("{scheme} {}", params.join(", "))
        })
    }
}

impl Denial {
    /// The `WWW-Authenticate` value for the `DPoP` scheme (RFC 9449 §7.1): the
    /// [`challenge`](Self::challenge) plus `algs`, the proof algorithms the server accepts.
    /// `None` for server-side failures (503).
    ///
    /// ```
    /// use zsp_core::{Algorithm, Denial};
    /// let algs = [Algorithm::ES256, Algorithm::EdDSA];
    /// assert_eq!(
    ///     Denial::UseDpopNonce.dpop_challenge(None, &algs).unwrap(),
    ///     r#"DPoP error="use_dpop_nonce", algs="ES256 EdDSA""#
    /// );
    /// assert_eq!(
    ///     Denial::MissingToken.dpop_challenge(Some("api"), &algs).unwrap(),
    ///     r#"DPoP realm="api", algs="ES256 EdDSA""#
    /// );
    /// ```
    pub fn dpop_challenge(&self, realm: Option<&str>, algs: &[jsonwebtoken::Algorithm]) -> Option<String> {
        let mut out = self.challenge("DPoP", realm)?;
        if !algs.is_empty() {
            let names: Vec<&str> = algs.iter().map(|a| crate::mint::alg_name(*a)).collect();
            out.push_str(if out == "DPoP" { " " } else { ", " });
            out.push_str(&format!("algs=\"{}\"", names.join(" ")));
        }
        Some(out)
    }
}

/// Scope tokens and realms never legitimately contain `"` or `\` (RFC 6749 §3.3); drop them
/// rather than emit a header an attacker could shape.
fn quote_safe(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6750_3_no_error_attribute_without_credentials() {
        assert_eq!(Denial::MissingToken.www_authenticate(None).unwrap(), "Bearer");
        assert_eq!(Denial::MissingToken.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn rfc6750_3_1_invalid_token_is_401() {
        let d = Denial::Expired;
        assert_eq!(d.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            d.www_authenticate(None).unwrap(),
            r#"Bearer error="invalid_token""#
        );
    }

    #[test]
    fn store_failures_are_503_without_challenge() {
        assert_eq!(
            Denial::StoreUnavailable("replay").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert!(Denial::ReplayStoreFull.www_authenticate(None).is_none());
    }
}
