//! Checking DPoP proofs: the resource server's (and broker's) side, RFC 9449 §4.3.
//!
//! Order of checks, cheapest first; every failure denies (`invalid_dpop_proof`, or
//! `use_dpop_nonce` for nonce failures, or 503 when the replay store cannot answer):
//!
//! 1. exactly one `DPoP` header value, at most [`MAX_PROOF_BYTES`];
//! 2. a compact JWS; header `typ` `dpop+jwt`; no `crit`; `alg` asymmetric and allowed (never
//!    `none`, never `HS*`);
//! 3. header `jwk` present, public only (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k` refused),
//!    parseable, and of the type the `alg` implies (alg ↔ key consistency);
//! 4. claims: `jti`, `htm` = request method, `htu` (with no query or fragment) = the request
//!    URI without query and fragment after RFC 3986 normalisation, `iat` within ± the window,
//!    `ath` = base64url(SHA-256(access token)) when a token is presented, the key's thumbprint
//!    = the token's `cnf.jkt` when the token is bound;
//! 5. the signature, with the key from the header;
//! 6. the server nonce, when required;
//! 7. single use of the proof, last, so a denied proof never burns its `jti`: the replay guard
//!    records `dpop:` + base64url(SHA-256(htu ‖ 0x00 ‖ jti)) — scoped to the target URI, never
//!    the raw `jti` — until the proof can no longer pass the `iat` check.
//!
//! Invariant: [`DpopVerifier::verify`] returns the key thumbprint only when every check
//! passed; there is no partial success.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::Method;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;

use super::htu::{has_query_or_fragment, normalize_htu};
use super::nonce::NonceIssuer;
use super::proof::{DPOP_TYP, access_token_hash};
use super::thumbprint::{Jkt, jwk_thumbprint};
use crate::clock::UnixTime;
use crate::denial::Denial;
use crate::keys::{Jwk, VerifyingKey, is_rsa, parse_alg};
use crate::replay::{MemoryReplayGuard, ReplayError, ReplayGuard};

/// Largest `DPoP` header value accepted; checked before any parsing. An RSA-4096 proof is
/// about 1.5 KiB.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// JWK members that only private or symmetric keys have (RFC 7518 §6).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a [`DpopVerifier`] configuration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopConfigError {
    /// No algorithm allowed.
    #[error("no DPoP algorithm allowed")]
    NoAlgorithms,
    /// A symmetric (HS*) algorithm: a proof's key is public, so HMAC proves nothing.
    #[error("symmetric algorithms cannot be used for DPoP")]
    SymmetricAlgorithm,
    /// The `iat` window is zero or above ten minutes.
    #[error("DPoP iat window must be between 1 s and 600 s")]
    InvalidWindow,
}

#[derive(Deserialize)]
struct ProofHeader {
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    jwk: Option<Value>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ProofClaims {
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    htm: Option<String>,
    #[serde(default)]
    htu: Option<String>,
    #[serde(default)]
    iat: Option<Value>,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// The authorization scheme a token was presented with (RFC 6750 §2.1, RFC 9449 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenScheme {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: DPoP <token>` with a `DPoP` proof header.
    Dpop,
}

impl TokenScheme {
    /// Splits an `Authorization` header value into scheme and token. The scheme name is
    /// case-insensitive (RFC 9110 §11.1); exactly one space separates it from the token, and
    /// the token must be non-empty `token68` text. Anything else is `None`.
    ///
    /// ```
    /// use zsp_core::dpop::TokenScheme;
    /// assert_eq!(TokenScheme::parse("DPoP abc.def.ghi"), Some((TokenScheme::Dpop, "abc.def.ghi")));
    /// assert_eq!(TokenScheme::parse("bearer t"), Some((TokenScheme::Bearer, "t")));
    /// assert_eq!(TokenScheme::parse("Basic dXNlcg=="), None);
    /// ```
    pub fn parse(authorization: &str) -> Option<(TokenScheme, &str)> {
        let (scheme, token) = authorization.split_once(' ')?;
        let scheme = if scheme.eq_ignore_ascii_case("bearer") {
            TokenScheme::Bearer
        } else if scheme.eq_ignore_ascii_case("dpop") {
            TokenScheme::Dpop
        } else {
            return None;
        };
        // token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
        let body = token.trim_end_matches('=');
        let ok = !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'));
        ok.then_some((scheme, token))
    }
}

/// Whether unbound bearer tokens are still accepted next to DPoP (the `api` example's
/// `ZSP_DPOP`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopMode {
    /// Bound tokens need a valid proof; unbound tokens are accepted as bearer tokens.
    #[default]
    Optional,
    /// Every token must be DPoP-bound and presented with a valid proof.
    Required,
}

struct Inner {
    algorithms: Vec<Algorithm>,
    window: u64,
    nonces: Option<NonceIssuer>,
    replay: Arc<dyn ReplayGuard>,
    mode: DpopMode,
    /// The header of the last proof that verified, with what it yielded.
    last_header: ArcSwapOption<ProofKey>,
}

/// A proof header and what its checks yield. A client signs every proof with one key, and
/// [`DpopKey`](super::DpopKey), like most clients, writes the very same header bytes each
/// time: remembering the last one that verified saves decoding and checking it, hashing its
/// thumbprint and importing its key on every request. Safe because all of that is a function
/// of the header bytes and this verifier's fixed configuration, and the memo is written only
/// after a proof with that header verified; the signature is still checked on every proof.
struct ProofKey {
    h64: Box<[u8]>,
    jkt: Jkt,
    key: VerifyingKey,
}

/// Verifies DPoP proofs. Cheap to clone; share one per service.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use http::Method;
/// use zsp_core::dpop::{DpopKey, DpopVerifier};
///
/// let now = 1_700_000_000;
/// let client = DpopKey::generate_es256().unwrap();
/// let token = "an-access-token-bound-to-the-key";
/// let proof = client
///     .proof_at(&Method::GET, "https://api.example/orders/1", Some(token), None, now)
///     .unwrap();
///
/// let verifier = DpopVerifier::builder().build().unwrap();
/// let jkt = verifier
///     .verify(
///         &[&proof],
///         &Method::GET,
///         "https://API.example:443/orders/1?verbose=1",
///         Some(token),
///         Some(client.thumbprint().as_str()), // the token's cnf.jkt
///         now,
///     )
///     .await
///     .unwrap();
/// assert_eq!(&jkt, client.thumbprint());
///
/// // The same proof again is a replay.
/// let again = verifier
///     .verify(&[&proof], &Method::GET, "https://api.example/orders/1", Some(token), None, now)
///     .await;
/// assert_eq!(again.unwrap_err().error_code(), Some("invalid_dpop_proof"));
/// # }
/// ```
#[derive(Clone)]
pub struct DpopVerifier(Arc<Inner>);

impl std::fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("algorithms", &self.0.algorithms)
            .field("iat_window_secs", &self.0.window)
            .field("nonces", &self.0.nonces)
            .finish_non_exhaustive()
    }
}

/// Builds a [`DpopVerifier`]; validated at [`build`](DpopVerifierBuilder::build).
#[derive(Debug)]
pub struct DpopVerifierBuilder {
    algorithms: Vec<Algorithm>,
    window: Duration,
    nonces: Option<NonceIssuer>,
    replay: Option<Arc<dyn ReplayGuard>>,
    mode: DpopMode,
}

impl DpopVerifierBuilder {
    /// Whether unbound bearer tokens are accepted ([`DpopMode::Optional`], the default) or
    /// every token must be DPoP-bound ([`DpopMode::Required`]); used by
    /// [`DpopVerifier::verify_presentation`].
    pub fn mode(mut self, mode: DpopMode) -> Self {
        self.mode = mode;
        self
    }
    /// The allowed proof algorithms (default ES256 and EdDSA; RS256, PS256 and others are
    /// opt-in). Symmetric algorithms are refused at [`build`](Self::build).
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algs.into_iter().collect();
        self
    }
    /// How far `iat` may be from now, in either direction (default 60 s, whole seconds).
    pub fn iat_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
    /// Requires every proof to carry a nonce this issuer accepts (RFC 9449 §8). Share the
    /// issuer's secret across replicas.
    pub fn require_nonces(mut self, issuer: NonceIssuer) -> Self {
        self.nonces = Some(issuer);
        self
    }
    /// The store that makes proofs single-use; share one across replicas (e.g. Redis).
    /// Default: an in-process [`MemoryReplayGuard`] with its default capacity.
    pub fn replay_guard(mut self, guard: Arc<dyn ReplayGuard>) -> Self {
        self.replay = Some(guard);
        self
    }
    /// Validates the configuration.
    pub fn build(self) -> Result<DpopVerifier, DpopConfigError> {
        if self.algorithms.is_empty() {
            return Err(DpopConfigError::NoAlgorithms);
        }
        if self
            .algorithms
            .iter()
            .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        {
            return Err(DpopConfigError::SymmetricAlgorithm);
        }
        let window = self.window.as_secs();
        if window == 0 || window > 600 || self.window.subsec_nanos() != 0 {
            return Err(DpopConfigError::InvalidWindow);
        }
        let mut algorithms = self.algorithms;
        algorithms.dedup();
        Ok(DpopVerifier(Arc::new(Inner {
            algorithms,
            window,
            nonces: self.nonces,
            replay: self
                .replay
                .unwrap_or_else(|| Arc::new(MemoryReplayGuard::default())),
            mode: self.mode,
            last_header: ArcSwapOption::empty(),
        })))
    }
}

/// Steps 2 and 3 of [`DpopVerifier::verify`]: the proof header's checks and its key.
fn proof_key(inner: &Inner, h64: &str) -> Result<ProofKey, Denial> {
    // 2. Header.
    let header_bytes = crate::b64::decode(h64).map_err(|_| invalid("header base64"))?;
    let header: ProofHeader = serde_json::from_slice(&header_bytes).map_err(|_| invalid("header JSON"))?;
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(DPOP_TYP))
    {
        return Err(invalid("typ is not dpop+jwt"));
    }
    if header.crit.is_some() {
        return Err(invalid("unsupported crit"));
    }
    let alg = header
        .alg
        .as_deref()
        .and_then(parse_alg)
        .ok_or(invalid("unsupported alg"))?;
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(invalid("symmetric alg"));
    }
    if !inner.algorithms.contains(&alg) {
        return Err(invalid("alg not allowed"));
    }

    // 3. The key in the header.
    let jwk_value = header.jwk.as_ref().ok_or(invalid("missing jwk"))?;
    let jwk_obj = jwk_value.as_object().ok_or(invalid("jwk is not an object"))?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk_obj.contains_key(*m)) {
        return Err(invalid("private key in jwk"));
    }
    let jkt = jwk_thumbprint(jwk_value).map_err(|_| invalid("unusable jwk"))?;
    let jwk = Jwk::deserialize(jwk_value).map_err(|_| invalid("unusable jwk"))?;
    let rsa_default = is_rsa(alg).then_some(alg);
    let key = VerifyingKey::from_request_jwk(&jwk, rsa_default).map_err(|_| invalid("unusable jwk"))?;
    if key.algorithm() != alg {
        return Err(invalid("alg does not match jwk"));
    }

    Ok(ProofKey {
        h64: h64.as_bytes().into(),
        jkt,
        key,
    })
}

fn invalid(why: &'static str) -> Denial {
    Denial::InvalidDpopProof(why)
}

fn split3(proof: &str) -> Option<(&str, &str, &str)> {
    let (h, rest) = proof.split_once('.')?;
    let (p, s) = rest.split_once('.')?;
    if h.is_empty() || p.is_empty() || s.is_empty() || s.contains('.') {
        return None;
    }
    Some((h, p, s))
}

/// The replay-store id of a proof: scoped to its target URI, and a hash so that no
/// client-chosen bytes reach the store.
fn replay_id(htu: &str, jti: &str) -> String {
    let mut input = Vec::with_capacity(htu.len() + 1 + jti.len());
    input.extend_from_slice(htu.as_bytes());
    // A normalised htu never contains NUL, so the split point is unambiguous.
    input.push(0);
    input.extend_from_slice(jti.as_bytes());
    format!("dpop:{}", crate::b64::encode(crate::crypto::sha256(&input)))
}

impl DpopVerifier {
    /// A builder with the defaults: ES256 and EdDSA, ±60 s, no nonces, in-memory replay guard.
    pub fn builder() -> DpopVerifierBuilder {
        DpopVerifierBuilder {
            algorithms: vec![Algorithm::ES256, Algorithm::EdDSA],
            window: Duration::from_secs(60),
            nonces: None,
            replay: None,
            mode: DpopMode::Optional,
        }
    }

    /// The configured [`DpopMode`].
    pub fn mode(&self) -> DpopMode {
        self.0.mode
    }

    /// The allowed proof algorithms, for the `algs` challenge parameter.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.0.algorithms
    }

    /// The nonce issuer when nonces are required.
    pub fn nonce_issuer(&self) -> Option<&NonceIssuer> {
        self.0.nonces.as_ref()
    }

    /// The nonce to send in a `DPoP-Nonce` response header at `now` (on `use_dpop_nonce`
    /// denials and, so clients stay current, on successful responses), when nonces are
    /// required.
    pub fn fresh_nonce(&self, now: UnixTime) -> Option<String> {
        self.0.nonces.as_ref().map(|n| n.current(now))
    }

    /// The `WWW-Authenticate: DPoP …` challenge for `denial`, listing the allowed algorithms.
    pub fn challenge(&self, denial: &Denial, realm: Option<&str>) -> Option<String> {
        denial.dpop_challenge(realm, &self.0.algorithms)
    }

    /// The DPoP rules for a token that already verified as a [`Grant`](crate::Grant), given
    /// the scheme it came with; returns the proof key's thumbprint when a proof was checked.
    ///
    /// * `DPoP` scheme: the token must be bound (`cnf.jkt`, else 401 `invalid_token`) and the
    ///   proof must pass [`verify`](Self::verify) with `ath` for this token and the key of
    ///   `cnf.jkt`;
    /// * `Bearer` scheme: a bound token is refused (RFC 9449 §7.2,
    ///   [`Denial::DpopBoundTokenAsBearer`]); an unbound one is accepted in
    ///   [`DpopMode::Optional`] and refused in [`DpopMode::Required`]
    ///   ([`Denial::SenderConstraintRequired`]). Any `DPoP` header is ignored, as §7.2 says.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use http::{HeaderMap, Method};
    /// use zsp_core::dpop::{DPOP, DpopKey, DpopVerifier, TokenScheme};
    /// use zsp_core::testing::TestIssuer;
    /// use zsp_core::{Policy, RequestFacts, RouteRule, Verifier};
    ///
    /// let client = DpopKey::generate_ed25519().unwrap();
    /// let issuer = TestIssuer::es256("https://broker.example");
    /// let policy = Policy::builder()
    ///     .issuer("https://broker.example")
    ///     .audience("api")
    ///     .route(RouteRule::get("/r").all_of(["s"]))
    ///     .build()
    ///     .unwrap();
    /// let verifier = Verifier::builder(policy, issuer.key_set()).build();
    /// let dpop = DpopVerifier::builder().build().unwrap();
    ///
    /// let token = issuer.token("api", &["s"]).jkt(client.thumbprint().as_str()).mint().unwrap();
    /// let grant = verifier.verify(&token, &RequestFacts::new(&Method::GET, "/r")).await.unwrap();
    /// let now = verifier.now();
    /// let mut headers = HeaderMap::new();
    /// let proof = client.proof_at(&Method::GET, "https://api.example/r", Some(&token), None, now);
    /// headers.insert(DPOP, proof.unwrap().parse().unwrap());
    ///
    /// let jkt = dpop
    ///     .verify_presentation(TokenScheme::Dpop, &grant, &headers, &Method::GET, "https://api.example/r", now)
    ///     .await
    ///     .unwrap();
    /// assert_eq!(jkt.as_ref(), Some(client.thumbprint()));
    ///
    /// // The same bound token as a bearer token is refused.
    /// let as_bearer = dpop
    ///     .verify_presentation(TokenScheme::Bearer, &grant, &headers, &Method::GET, "https://api.example/r", now)
    ///     .await;
    /// assert_eq!(as_bearer, Err(zsp_core::Denial::DpopBoundTokenAsBearer));
    /// # }
    /// ```
    pub async fn verify_presentation(
        &self,
        scheme: TokenScheme,
        grant: &crate::Grant,
        headers: &http::HeaderMap,
        method: &Method,
        htu: &str,
        now: UnixTime,
    ) -> Result<Option<Jkt>, Denial> {
        let bound = grant.jkt();
        match (scheme, bound) {
            (TokenScheme::Bearer, Some(_)) => Err(Denial::DpopBoundTokenAsBearer),
            (TokenScheme::Bearer, None) => match self.0.mode {
                DpopMode::Optional => Ok(None),
                DpopMode::Required => Err(Denial::SenderConstraintRequired),
            },
            (TokenScheme::Dpop, None) => Err(Denial::InvalidClaim("cnf")),
            (TokenScheme::Dpop, Some(jkt)) => self
                .verify_headers(headers, method, htu, Some(grant.token()), Some(jkt), now)
                .await
                .map(Some),
        }
    }

    /// [`verify`](Self::verify) with the proofs taken from the request's `DPoP` headers.
    pub async fn verify_headers(
        &self,
        headers: &http::HeaderMap,
        method: &Method,
        htu: &str,
        access_token: Option<&str>,
        expected_jkt: Option<&str>,
        now: UnixTime,
    ) -> Result<Jkt, Denial> {
        let proofs = super::headers::proof_header_values(headers)?;
        self.verify(&proofs, method, htu, access_token, expected_jkt, now)
            .await
    }

    /// Verifies the proof for one request and returns the proof key's thumbprint.
    ///
    /// * `proof_headers`: every `DPoP` header value of the request (more than one denies);
    /// * `method`, `htu`: the request method and the absolute URI the request was sent to, as
    ///   the client saw it (scheme and host of the public endpoint); query and fragment are
    ///   ignored;
    /// * `access_token`: the token from `Authorization: DPoP`, if any (then `ath` is required);
    /// * `expected_jkt`: the token's `cnf.jkt`, if the token is bound;
    /// * `now`: the current time, injected.
    pub async fn verify(
        &self,
        proof_headers: &[&str],
        method: &Method,
        htu: &str,
        access_token: Option<&str>,
        expected_jkt: Option<&str>,
        now: UnixTime,
    ) -> Result<Jkt, Denial> {
        let inner = &*self.0;
        let proof = match proof_headers {
            [] => return Err(invalid("missing DPoP header")),
            [one] => *one,
            _ => return Err(invalid("multiple DPoP headers")),
        };
        if proof.len() > MAX_PROOF_BYTES {
            return Err(invalid("proof too large"));
        }
        let (h64, p64, s64) = split3(proof).ok_or(invalid("not a compact JWS"))?;

        // 2 and 3: the header and its key, unless this header is the one that verified last.
        let remembered = inner
            .last_header
            .load_full()
            .filter(|m| *m.h64 == *h64.as_bytes());
        let hit = remembered.is_some();
        let pk = match remembered {
            Some(pk) => pk,
            None => Arc::new(proof_key(inner, h64)?),
        };
        let (jkt, key) = (&pk.jkt, &pk.key);

        // 4. Claims.
        let payload = crate::b64::decode(p64).map_err(|_| invalid("payload base64"))?;
        let claims: ProofClaims = serde_json::from_slice(&payload).map_err(|_| invalid("payload JSON"))?;
        let jti = claims
            .jti
            .as_deref()
            .filter(|j| !j.is_empty())
            .ok_or(invalid("missing jti"))?;
        let htm = claims.htm.as_deref().ok_or(invalid("missing htm"))?;
        if htm != method.as_str() {
            return Err(invalid("htm mismatch"));
        }
        let proof_htu = claims.htu.as_deref().ok_or(invalid("missing htu"))?;
        if has_query_or_fragment(proof_htu) {
            return Err(invalid("htu has query or fragment"));
        }
        let raw_htu = proof_htu;
        let proof_htu = normalize_htu(raw_htu).map_err(|_| invalid("invalid htu"))?;
        // A client usually writes the very URI the server reconstructs: equal text normalises
        // equally, so only a different spelling needs the second normalisation.
        if htu != raw_htu {
            let request_htu = normalize_htu(htu).map_err(|_| invalid("request URI not comparable"))?;
            if proof_htu != request_htu {
                return Err(invalid("htu mismatch"));
            }
        }
        // NumericDate may be fractional (RFC 7519 §2); whole seconds are what the window needs.
        let iat = match claims.iat.as_ref() {
            None => return Err(invalid("missing iat")),
            Some(v) => match (v.as_u64(), v.as_f64()) {
                (Some(i), _) => i,
                (None, Some(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => f as u64,
                _ => return Err(invalid("invalid iat")),
            },
        };
        if now > iat.saturating_add(inner.window) {
            return Err(invalid("stale iat"));
        }
        if iat > now.saturating_add(inner.window) {
            return Err(invalid("iat in the future"));
        }
        if let Some(token) = access_token {
            let ath = claims.ath.as_deref().ok_or(invalid("missing ath"))?;
            if !crate::crypto::ct_eq(ath.as_bytes(), access_token_hash(token).as_bytes()) {
                return Err(invalid("ath mismatch"));
            }
        }
        if let Some(expected) = expected_jkt
            && !jkt.matches(expected)
        {
            return Err(invalid("key does not match cnf.jkt"));
        }

        // 5. Signature.
        let sig = crate::b64::decode(s64).map_err(|_| invalid("bad signature"))?;
        let signing_input = &proof[..h64.len() + 1 + p64.len()];
        if !key.verify(signing_input.as_bytes(), &sig) {
            return Err(invalid("bad signature"));
        }
        if !hit {
            inner.last_header.store(Some(pk.clone()));
        }

        // 6. Nonce.
        if let Some(issuer) = &inner.nonces {
            let nonce = claims.nonce.as_deref().ok_or(Denial::UseDpopNonce)?;
            issuer.check(nonce, now).map_err(|_| Denial::UseDpopNonce)?;
        }

        // 7. Single use: remembered for as long as the iat check could still pass.
        let until = iat.saturating_add(inner.window).saturating_add(1);
        match inner
            .replay
            .first_use(&replay_id(&proof_htu, jti), now, until)
            .await
        {
            Ok(true) => Ok(jkt.clone()),
            Ok(false) => Err(invalid("proof replayed")),
            Err(ReplayError::Full) => Err(Denial::ReplayStoreFull),
            Err(e) => {
                tracing::warn!(target: "zsp::dpop", error = %e, "DPoP replay store unavailable");
                Err(Denial::StoreUnavailable("replay"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_remembered_header_still_needs_its_own_signature() {
        use crate::dpop::DpopKey;
        let v = DpopVerifier::builder().build().unwrap();
        let (a, b) = (DpopKey::generate().unwrap(), DpopKey::generate().unwrap());
        let (url, now) = ("https://api.example/r", 1_700_000_000);
        let check = |proof: String| {
            let v = v.clone();
            async move { v.verify(&[&proof], &Method::GET, url, None, None, now).await }
        };
        let proof_a = || a.proof_at(&Method::GET, url, None, None, now).unwrap();
        assert_eq!(check(proof_a()).await.as_ref(), Ok(a.thumbprint()));
        // The header is remembered now; a second proof by the same key uses it.
        assert_eq!(check(proof_a()).await.as_ref(), Ok(a.thumbprint()));
        assert!(v.0.last_header.load().is_some());
        // A's header (its public key) on a proof that B signed: refused at the signature.
        let proof_b = b.proof_at(&Method::GET, url, None, None, now).unwrap();
        let a_header = proof_a().split('.').next().unwrap().to_owned();
        let (_, b_rest) = proof_b.split_once('.').unwrap();
        assert_eq!(
            check(format!("{a_header}.{b_rest}")).await,
            Err(invalid("bad signature"))
        );
        // B's own proofs verify, and B's header takes the place of A's.
        assert_eq!(check(proof_b).await.as_ref(), Ok(b.thumbprint()));
        assert_eq!(check(proof_a()).await.as_ref(), Ok(a.thumbprint()));
    }

    #[test]
    fn replay_ids_are_scoped_hashed_and_unambiguous() {
        let a = replay_id("https://h/a", "jti");
        assert!(a.starts_with("dpop:") && !a.contains("jti"));
        assert_ne!(a, replay_id("https://h/b", "jti"));
        assert_ne!(replay_id("https://h/a", "bc"), replay_id("https://h/ab", "c"));
    }

    #[test]
    fn configuration_is_validated() {
        assert_eq!(
            DpopVerifier::builder().algorithms([]).build().unwrap_err(),
            DpopConfigError::NoAlgorithms
        );
        assert_eq!(
            DpopVerifier::builder()
                .algorithms([Algorithm::ES256, Algorithm::HS256])
                .build()
                .unwrap_err(),
            DpopConfigError::SymmetricAlgorithm
        );
        assert_eq!(
            DpopVerifier::builder()
                .iat_window(Duration::ZERO)
                .build()
                .unwrap_err(),
            DpopConfigError::InvalidWindow
        );
    }
}
