//! The verifier: one token and one request in, a [`Grant`] or a [`Denial`] out.
//!
//! Order of checks, cheapest first, so a token that fails a cheap check never reaches the
//! signature (DESIGN "Data flow"):
//!
//! 1. size limit, before any parsing;
//! 2. compact JWS shape; header decode; `alg` (never `none`, allowed by policy); `crit`; `typ`;
//! 3. key lookup by `kid` (one coalesced refresh for an unknown `kid` when keys are dynamic);
//!    the header `alg` must equal the key's pinned algorithm;
//! 4. payload decode; `exp`, `iat` required; expiry, `nbf`, future `iat`, lifetime cap; `iss`;
//!    `aud`. A denial here answers 401 `invalid_token` whether or not the signature is valid,
//!    so checking first leaks nothing;
//! 5. the signature;
//! 6. the route rule: scopes, source address, sender constraint (only for a genuine token,
//!    so a 403 never confirms anything to a forger);
//! 7. an optional caller check ([`Verifier::verify_with`], e.g. the DPoP proof);
//! 8. revocation; 9. replay, last, so a denied request never burns a single-use `jti`.
//!    A revocation store that also records single use does 8 and 9 in one step
//!    ([`Revocation::check_single_use`]: one round trip to a shared store).
//!
//! `jku`, `x5u`, `x5c` and `jwk` headers are ignored: keys come only from the [`KeySet`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::Method;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::audit::{AuditDecision, AuditEvent};
use crate::claims::Claims;
use crate::clock::{Clock, SharedClock, UnixTime};
use crate::denial::Denial;
use crate::grant::Grant;
use crate::keys::{KeySet, Keys, VerifyingKey, parse_alg};
use crate::policy::Policy;
use crate::replay::{MemoryReplayGuard, ReplayError, ReplayGuard};
use crate::revoke::{Revocation, RevocationQuery, SingleUseCheck};

/// The facts about the request a token is presented with.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Path, without query string.
    pub path: &'a str,
    /// The client's address, from the connection or a trusted proxy header.
    pub client_ip: Option<IpAddr>,
}

impl<'a> RequestFacts<'a> {
    /// Facts for `method` and `path`.
    pub fn new(method: &'a Method, path: &'a str) -> Self {
        Self {
            method,
            path,
            client_ip: None,
        }
    }
    /// Sets the client address for context rules.
    pub fn client_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.client_ip = ip;
        self
    }
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    typ: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

struct Inner {
    policy: Policy,
    keys: Keys,
    replay: Arc<dyn ReplayGuard>,
    revocation: Option<Arc<dyn Revocation>>,
    clock: SharedClock,
    audit: bool,
    signature_cache: Option<crate::sigcache::SignatureCache>,
}

/// Verifies tokens against keys and a [`Policy`]. Cheap to clone; share one per service.
#[derive(Clone)]
pub struct Verifier(Arc<Inner>);

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("policy", &self.0.policy)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Verifier`].
pub struct VerifierBuilder {
    policy: Policy,
    keys: Keys,
    replay: Option<Arc<dyn ReplayGuard>>,
    revocation: Option<Arc<dyn Revocation>>,
    clock: SharedClock,
    audit: bool,
    signature_cache: usize,
}

impl VerifierBuilder {
    /// Remembers up to `capacity` tokens whose signature verified, and skips the signature
    /// check when the same token comes back (default 0: off). Claims, policy, revocation and
    /// replay are still checked on every request; single-use tokens and routes never use it.
    /// Worth it when callers reuse a token for many requests (the usual cached outbound
    /// token): the signature dominates the cost of a verify.
    pub fn signature_cache(mut self, capacity: usize) -> Self {
        self.signature_cache = capacity;
        self
    }
    /// The replay guard for single-use routes. Without one, a [`MemoryReplayGuard`] is used
    /// when the policy has single-use routes: single use is never silently skipped.
    pub fn replay_guard(mut self, guard: Arc<dyn ReplayGuard>) -> Self {
        self.replay = Some(guard);
        self
    }
    /// The revocation store to consult on every request.
    pub fn revocation(mut self, store: Arc<dyn Revocation>) -> Self {
        self.revocation = Some(store);
        self
    }
    /// The clock (tests inject a [`crate::ManualClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Emit audit events (default on).
    pub fn audit(mut self, on: bool) -> Self {
        self.audit = on;
        self
    }
    /// Builds the verifier.
    pub fn build(self) -> Verifier {
        // Tokens can demand single use themselves (claim `single_use`), so a guard always
        // exists: single use is never silently skipped.
        let replay = self
            .replay
            .unwrap_or_else(|| Arc::new(MemoryReplayGuard::default()) as Arc<dyn ReplayGuard>);
        Verifier(Arc::new(Inner {
            policy: self.policy,
            keys: self.keys,
            replay,
            revocation: self.revocation,
            clock: self.clock,
            audit: self.audit,
            signature_cache: (self.signature_cache > 0)
                .then(|| crate::sigcache::SignatureCache::new(self.signature_cache)),
        }))
    }
}

/// What the checks learnt, for the audit event, whether they ended in allow or deny.
#[derive(Default)]
struct Seen {
    claims: Option<Claims>,
    route: Option<Arc<str>>,
}

impl Verifier {
    /// Starts a builder from a policy and keys ([`KeySet`], `Arc<KeySet>` or an
    /// `Arc<impl KeySource>`).
    pub fn builder(policy: Policy, keys: impl Into<Keys>) -> VerifierBuilder {
        crate::crypto::ensure_provider();
        VerifierBuilder {
            policy,
            keys: keys.into(),
            replay: None,
            revocation: None,
            clock: crate::clock::system(),
            audit: true,
            signature_cache: 0,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.0.policy
    }

    /// The clock.
    pub fn now(&self) -> UnixTime {
        self.0.clock.now()
    }

    /// The revocation store, if any.
    pub fn revocation(&self) -> Option<&Arc<dyn Revocation>> {
        self.0.revocation.as_ref()
    }

    /// Verifies `token` for the request described by `req`.
    pub async fn verify(&self, token: &str, req: &RequestFacts<'_>) -> Result<Grant, Denial> {
        self.verify_with(token, req, |_| std::future::ready(Ok(()))).await
    }

    /// [`verify`](Self::verify) with one more check of the caller's, run on the would-be
    /// [`Grant`] after every token and route check but **before** the revocation and replay
    /// stores, so a request that `check` denies (a bad DPoP proof, say) never burns a
    /// single-use `jti` (and costs the shared store no round trip).
    /// The audit event records the final outcome, including `check`'s denial.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use http::Method;
    /// use zsp_core::testing::TestIssuer;
    /// use zsp_core::{Denial, Policy, RequestFacts, RouteRule, Verifier};
    ///
    /// let issuer = TestIssuer::es256("https://broker.example");
    /// let policy = Policy::builder()
    ///     .issuer("https://broker.example")
    ///     .audience("api")
    ///     .route(RouteRule::post("/pay").all_of(["pay"]).single_use())
    ///     .build()
    ///     .unwrap();
    /// let verifier = Verifier::builder(policy, issuer.key_set()).build();
    /// let token = issuer.token("api", &["pay"]).mint().unwrap();
    /// let facts = RequestFacts::new(&Method::POST, "/pay");
    ///
    /// // Denied by the extra check: the single-use jti is not recorded…
    /// let denied = verifier
    ///     .verify_with(&token, &facts, |_grant| async { Err(Denial::InvalidDpopProof("demo")) })
    ///     .await;
    /// assert_eq!(denied.unwrap_err(), Denial::InvalidDpopProof("demo"));
    /// // …so the token still works once.
    /// assert!(verifier.verify(&token, &facts).await.is_ok());
    /// assert_eq!(verifier.verify(&token, &facts).await.unwrap_err(), Denial::Replayed);
    /// # }
    /// ```
    pub async fn verify_with<F, Fut>(
        &self,
        token: &str,
        req: &RequestFacts<'_>,
        check: F,
    ) -> Result<Grant, Denial>
    where
        F: FnOnce(Grant) -> Fut,
        Fut: std::future::Future<Output = Result<(), Denial>>,
    {
        // Building the event costs allocations; skip it when nothing listens to zsp::audit.
        let start = (self.0.audit && tracing::enabled!(target: "zsp::audit", tracing::Level::INFO))
            .then(Instant::now);
        let mut seen = Seen::default();
        let result = self.verify_inner(token, req, &mut seen, check).await;
        if let Some(start) = start {
            self.emit(&result, req, &seen, start);
        }
        result
    }

    /// Records a denial that happened before a token could be verified (no token, two
    /// Authorization headers…) so that every decision has its audit event.
    pub fn audit_denial(&self, denial: &Denial, req: &RequestFacts<'_>) {
        if self.0.audit && tracing::enabled!(target: "zsp::audit", tracing::Level::INFO) {
            let route = self
                .0
                .policy
                .route_for(req.method, req.path)
                .map(|r| r.template());
            AuditEvent {
                decision: AuditDecision::Deny,
                reason: denial.reason(),
                iss: None,
                sub: None,
                client_id: None,
                jti: None,
                method: req.method.as_str(),
                route,
                scopes: None,
                elapsed_us: 0,
            }
            .emit();
        }
    }

    fn emit(&self, result: &Result<Grant, Denial>, req: &RequestFacts<'_>, seen: &Seen, start: Instant) {
        let elapsed_us = start.elapsed().as_micros() as u64;
        let (decision, reason) = match result {
            Ok(_) => (AuditDecision::Allow, "ok"),
            Err(d) => (AuditDecision::Deny, d.reason()),
        };
        let claims = match result {
            Ok(g) => Some(g.registered()),
            Err(_) => seen.claims.as_ref(),
        };
        let scopes = match result {
            Ok(g) => Some(g.scopes().to_string()),
            Err(_) => seen.claims.as_ref().map(|c| c.scopes().to_string()),
        };
        AuditEvent {
            decision,
            reason,
            iss: claims.and_then(|c| c.iss.as_deref()),
            sub: claims.and_then(|c| c.sub.as_deref()),
            client_id: claims.and_then(|c| c.client_id.as_deref()),
            jti: claims.and_then(|c| c.jti.as_deref()),
            method: req.method.as_str(),
            route: seen.route.as_deref(),
            scopes: scopes.as_deref(),
            elapsed_us,
        }
        .emit();
    }

    async fn verify_inner<F, Fut>(
        &self,
        token: &str,
        req: &RequestFacts<'_>,
        seen: &mut Seen,
        check: F,
    ) -> Result<Grant, Denial>
    where
        F: FnOnce(Grant) -> Fut,
        Fut: std::future::Future<Output = Result<(), Denial>>,
    {
        let p = &self.0.policy;
        if token.is_empty() {
            return Err(Denial::MissingToken);
        }
        if token.len() > p.max_token_bytes {
            return Err(Denial::TokenTooLarge);
        }
        let bytes = token.as_bytes();
        let (h64, rest) = split_dot(bytes).ok_or(Denial::Malformed("not a compact JWS"))?;
        let (p64, s64) = split_dot(rest).ok_or(Denial::Malformed("not a compact JWS"))?;
        if s64.contains(&b'.') {
            return Err(Denial::Malformed("not a compact JWS"));
        }
        if h64.is_empty() || p64.is_empty() {
            return Err(Denial::Malformed("empty segment"));
        }

        // Header: small, decoded on the stack.
        let mut hbuf = [0u8; 1024];
        let hlen = crate::b64::decode_into(h64, &mut hbuf).ok_or(Denial::Malformed("header base64"))?;
        let header: Header<'_> =
            serde_json::from_slice(&hbuf[..hlen]).map_err(|_| Denial::Malformed("header JSON"))?;
        let alg = parse_alg(&header.alg).ok_or(Denial::UnsupportedAlgorithm)?;
        if !p.algorithms.contains(&alg) {
            return Err(Denial::AlgorithmNotAllowed);
        }
        // zsp understands no JWS extensions (RFC 7515 §4.1.11): any crit is unknown to it.
        if header.crit.is_some() {
            return Err(Denial::UnsupportedCritical);
        }
        check_typ(header.typ.as_deref(), p.require_at_jwt)?;

        // Key: pinned algorithm, from trusted keys only.
        let kid = header.kid.as_deref();
        let dynamic_keys;
        let key: &VerifyingKey = match &self.0.keys {
            Keys::Static(set) => set.get(kid).ok_or(Denial::UnknownKey)?,
            Keys::Dynamic(src) => {
                let current = src.current();
                dynamic_keys = match current {
                    Some(set) if set.get(kid).is_some() => set,
                    Some(_) => src
                        .refresh_for_unknown_kid(kid)
                        .await
                        .filter(|s: &Arc<KeySet>| s.get(kid).is_some())
                        .ok_or(Denial::UnknownKey)?,
                    None => match src.refresh_for_unknown_kid(kid).await {
                        Some(set) => set,
                        None => return Err(Denial::KeysUnavailable),
                    },
                };
                dynamic_keys.get(kid).ok_or(Denial::UnknownKey)?
            }
        };
        if key.algorithm() != alg {
            return Err(Denial::AlgorithmMismatch);
        }

        // Claims, checked before the signature (all 401 invalid_token).
        let payload = crate::b64::decode(p64).map_err(|_| Denial::Malformed("payload base64"))?;
        let claims: Claims =
            serde_json::from_slice(&payload).map_err(|_| Denial::Malformed("payload JSON"))?;
        let now = self.0.clock.now();
        check_time(&claims, now, p)?;
        match claims.iss.as_deref() {
            None => return Err(Denial::MissingClaim("iss")),
            Some(iss) if !p.issuers.iter().any(|i| i == iss) => return Err(Denial::InvalidIssuer),
            _ => {}
        }
        match &claims.aud {
            None => return Err(Denial::MissingClaim("aud")),
            Some(aud) if !p.accepts_audience(aud) => return Err(Denial::InvalidAudience),
            _ => {}
        }
        seen.claims = Some(claims);

        // Signature, unless this exact token was verified by this exact key before and the
        // request is not single-use.
        let rule = p.route_for(req.method, req.path);
        let cache = self.0.signature_cache.as_ref().filter(|_| {
            rule.is_some_and(|r| !r.is_single_use())
                && seen.claims.as_ref().is_some_and(|c| c.single_use != Some(true))
        });
        let digest = cache.map(|_| crate::sigcache::SignatureCache::digest(bytes));
        let cached = match (cache, &digest) {
            (Some(c), Some(d)) => c.hit(d, key, now),
            _ => false,
        };
        if !cached {
            let mut sbuf = [0u8; 1024];
            let slen = crate::b64::decode_into(s64, &mut sbuf).ok_or(Denial::InvalidSignature)?;
            if slen == 0 {
                return Err(Denial::InvalidSignature);
            }
            let signing_input = &bytes[..h64.len() + 1 + p64.len()];
            if !key.verify(signing_input, &sbuf[..slen]) {
                return Err(Denial::InvalidSignature);
            }
            if let (Some(c), Some(d), Some(claims)) = (cache, digest, seen.claims.as_ref()) {
                c.insert(
                    d,
                    key,
                    claims.exp.unwrap_or_default().saturating_add(p.leeway),
                    now,
                );
            }
        }

        // Route rule, for genuine tokens only.
        let claims = seen.claims.as_ref().ok_or(Denial::Malformed("claims"))?;
        let rule = rule.ok_or(Denial::RouteNotAllowed)?;
        seen.route = Some(rule.template_arc());
        let scopes = claims.scopes();
        if !rule.scopes().is_satisfied_by(&scopes) {
            return Err(Denial::InsufficientScope {
                required: rule.scopes().to_challenge(),
            });
        }
        if !rule.source_cidrs().is_empty() {
            let ok = req
                .client_ip
                .is_some_and(|ip| rule.source_cidrs().iter().any(|c| c.contains(ip)));
            if !ok {
                return Err(Denial::SourceNotAllowed);
            }
        }
        if let Some(cidrs) = claims.client_id.as_deref().and_then(|c| p.client_cidrs(c)) {
            let ok = req
                .client_ip
                .is_some_and(|ip| cidrs.iter().any(|c| c.contains(ip)));
            if !ok {
                return Err(Denial::SourceNotAllowed);
            }
        }
        if rule.is_sender_constrained() && claims.cnf.as_ref().and_then(|c| c.jkt.as_ref()).is_none() {
            return Err(Denial::SenderConstraintRequired);
        }

        // exp is known present (check_time).
        let exp = claims.exp.unwrap_or_default();
        let iat = claims.iat.unwrap_or_default();
        let single_use = rule.is_single_use() || claims.single_use == Some(true);
        let until = exp.saturating_add(p.leeway);
        if single_use && claims.jti.is_none() {
            return Err(Denial::MissingClaim("jti"));
        }

        // The caller's check (e.g. the DPoP proof) comes before the stores, so a request it
        // refuses never reaches them and never burns a single-use jti.
        let claims = seen.claims.take().ok_or(Denial::Malformed("claims"))?;
        let grant = Grant::new(claims, scopes, payload, seen.route.clone(), Arc::from(token));
        let deny = |seen: &mut Seen, d: Denial| {
            // Keep the claims for the audit event of this denial.
            seen.claims = Some(grant.registered().clone());
            Err(d)
        };
        if let Err(denial) = check(grant.clone()).await {
            return deny(seen, denial);
        }
        let claims = grant.registered();
        let jti = claims.jti.as_deref();

        let mut recorded = false;
        if let Some(rev) = &self.0.revocation {
            let q = RevocationQuery {
                jti,
                sub: claims.sub.as_deref(),
                client_id: claims.client_id.as_deref(),
                iat,
                now,
            };
            // A store holding both records answers revocation and first use in one round trip.
            let combined = match jti {
                Some(jti) if single_use => rev.check_single_use(&q, jti, until).await,
                _ => None,
            };
            let outcome = match combined {
                Some(Ok(SingleUseCheck::FirstUse)) => {
                    recorded = true;
                    None
                }
                Some(Ok(SingleUseCheck::Replayed)) => Some(Denial::Replayed),
                Some(Ok(SingleUseCheck::Revoked)) => Some(Denial::Revoked),
                Some(Err(e)) => {
                    tracing::warn!(target: "zsp::verify", error = %e, "revocation store failed; denying");
                    Some(Denial::StoreUnavailable("revocation"))
                }
                None => match rev.is_revoked(&q).await {
                    Ok(false) => None,
                    Ok(true) => Some(Denial::Revoked),
                    Err(e) => {
                        tracing::warn!(target: "zsp::verify", error = %e, "revocation store failed; denying");
                        Some(Denial::StoreUnavailable("revocation"))
                    }
                },
            };
            if let Some(d) = outcome {
                return deny(seen, d);
            }
        }

        if let (true, false, Some(jti)) = (single_use, recorded, jti) {
            let outcome = match self.0.replay.first_use(jti, now, until).await {
                Ok(true) => None,
                Ok(false) => Some(Denial::Replayed),
                Err(ReplayError::Full) => Some(Denial::ReplayStoreFull),
                Err(e) => {
                    tracing::warn!(target: "zsp::verify", error = %e, "replay store failed; denying");
                    Some(Denial::StoreUnavailable("replay"))
                }
            };
            if let Some(d) = outcome {
                return deny(seen, d);
            }
        }
        Ok(grant)
    }
}

fn split_dot(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|c| *c == b'.')?;
    Some((&b[..i], &b[i + 1..]))
}

fn check_typ(typ: Option<&str>, require_at_jwt: bool) -> Result<(), Denial> {
    // RFC 7515 §4.1.9: media types compare case-insensitively, "application/" may be omitted.
    let is_at_jwt =
        |t: &str| t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt");
    match typ {
        Some(t) if is_at_jwt(t) => Ok(()),
        _ if require_at_jwt => Err(Denial::TypMismatch),
        None => Ok(()),
        Some(t) if t.eq_ignore_ascii_case("jwt") || t.eq_ignore_ascii_case("application/jwt") => Ok(()),
        // Anything else (dpop+jwt, logout+jwt, …) is another kind of JWT: never an access token.
        Some(_) => Err(Denial::TypMismatch),
    }
}

fn check_time(c: &Claims, now: UnixTime, p: &Policy) -> Result<(), Denial> {
    let exp = c.exp.ok_or(Denial::MissingClaim("exp"))?;
    let iat = c.iat.ok_or(Denial::MissingClaim("iat"))?;
    let leeway = p.leeway;
    // RFC 7519 §4.1.4: valid only while now < exp; leeway extends that.
    if now >= exp.saturating_add(leeway) {
        return Err(Denial::Expired);
    }
    if let Some(nbf) = c.nbf
        && now.saturating_add(leeway) < nbf
    {
        return Err(Denial::NotYetValid);
    }
    if iat > now.saturating_add(leeway) {
        return Err(Denial::IssuedInFuture);
    }
    if exp < iat {
        return Err(Denial::InvalidClaim("exp before iat"));
    }
    if exp - iat > p.max_lifetime {
        return Err(Denial::LifetimeTooLong);
    }
    Ok(())
}

/// The JOSE algorithm names zsp can verify, for docs and challenges.
pub fn algorithm_names(algs: &[Algorithm]) -> String {
    algs.iter()
        .map(|a| crate::mint::alg_name(*a))
        .collect::<Vec<_>>()
        .join(" ")
}
