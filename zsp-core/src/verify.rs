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

use crate::audit::{AuditDecision, AuditEvent, AuditSink, TokenAudit};
use crate::claims_view::{Checked, ClaimsView, Str};
use crate::clock::{Clock, SharedClock, UnixTime};
use crate::denial::Denial;
use crate::grant::{Fields, Grant, Parsed};
use crate::header_memo::HeaderMemo;
use crate::keys::{KeySet, Keys, VerifyingKey, parse_alg};
use crate::policy::{Policy, RouteRule};
use crate::replay::{MemoryReplayGuard, ReplayError, ReplayGuard};
use crate::revoke::{Revocation, RevocationQuery, SingleUseCheck};
use crate::sigcache::SignatureCache;

/// How many verified tokens a [`Verifier`] remembers by default
/// ([`VerifierBuilder::signature_cache`]); about 1 KiB each.
pub const DEFAULT_SIGNATURE_CACHE: usize = 4096;

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
    alg: Str<'a>,
    #[serde(default, borrow)]
    kid: Option<Str<'a>>,
    #[serde(default, borrow)]
    typ: Option<Str<'a>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

impl<'a> Header<'a> {
    /// The flat common case by [`crate::flat_json`], anything else by serde_json.
    fn parse(json: &'a [u8]) -> Option<Self> {
        Self::parse_flat(json).or_else(|| serde_json::from_slice(json).ok())
    }

    fn parse_flat(json: &'a [u8]) -> Option<Self> {
        use crate::flat_json::{Value, once};
        let (mut alg, mut kid, mut typ, mut crit) = (None, None, None, None);
        let mut seen = 0u32;
        let str_of = |val: Value<'a>| match val {
            Value::Str(s) => Some(Some(Str(std::borrow::Cow::Borrowed(s)))),
            Value::Null => Some(None),
            _ => None,
        };
        let json = std::str::from_utf8(json).ok()?;
        crate::flat_json::scan(json, |key, val| match key {
            "alg" => match val {
                Value::Str(_) => once(&mut seen, 1, &mut alg, str_of(val)?),
                _ => None,
            },
            "kid" => once(&mut seen, 1 << 1, &mut kid, str_of(val)?),
            "typ" => once(&mut seen, 1 << 2, &mut typ, str_of(val)?),
            // serde reads `"crit": null` as absent and any other value as present.
            "crit" => once(
                &mut seen,
                1 << 3,
                &mut crit,
                (val != Value::Null).then_some(serde::de::IgnoredAny),
            ),
            _ => Some(()),
        })?;
        Some(Header {
            alg: alg?,
            kid,
            typ,
            crit,
        })
    }
}

struct Inner {
    policy: Policy,
    keys: Keys,
    replay: Arc<dyn ReplayGuard>,
    revocation: Option<Arc<dyn Revocation>>,
    clock: SharedClock,
    audit: bool,
    audit_sink: Option<Arc<dyn AuditSink>>,
    signature_cache: Option<SignatureCache>,
    header_memo: HeaderMemo,
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
    audit_sink: Option<Arc<dyn AuditSink>>,
    signature_cache: usize,
}

impl VerifierBuilder {
    /// Remembers up to `capacity` tokens whose signature verified, and skips the signature
    /// check when the same token comes back (default [`DEFAULT_SIGNATURE_CACHE`]; 0 turns it
    /// off). Time claims, route rules, revocation and replay are still checked on every
    /// request; single-use tokens and routes never use it. Callers reuse a token for many
    /// requests (the usual cached outbound token), and the signature is almost all of a
    /// verify's cost: a hit costs a fraction of a microsecond instead of tens.
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
    /// Sends audit events to `sink` instead of `tracing` (e.g. a [`crate::JsonLinesAudit`]
    /// on a file of its own: a fraction of the cost of a formatted tracing event).
    pub fn audit_sink(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit_sink = Some(sink);
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
            audit_sink: self.audit_sink,
            signature_cache: (self.signature_cache > 0).then(|| SignatureCache::new(self.signature_cache)),
            header_memo: HeaderMemo::default(),
        }))
    }
}

/// What the checks learnt, for the audit event, whether they ended in allow or deny.
#[derive(Default)]
struct Seen {
    parsed: Option<Arc<Parsed>>,
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
            audit_sink: None,
            signature_cache: DEFAULT_SIGNATURE_CACHE,
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

    /// Whether this verifier emits audit events through `tracing` ([`VerifierBuilder::audit`],
    /// and no [`VerifierBuilder::audit_sink`]): the inbound layer then opens a request span
    /// for them (target `zsp::verify`, level INFO) when the subscriber enables it.
    pub fn audits(&self) -> bool {
        self.0.audit && self.0.audit_sink.is_none()
    }

    /// Whether an audit event would be recorded now: audit is on and its sink listens.
    fn audit_wanted(&self) -> bool {
        self.0.audit
            && (self.0.audit_sink.is_some() || tracing::enabled!(target: "zsp::audit", tracing::Level::INFO))
    }

    /// Records `event` where this verifier's audit events go (its sink, or `tracing`), if
    /// audit is on; for decisions a caller makes itself (the inbound layer's anonymous pass).
    pub fn record(&self, event: &AuditEvent<'_>) {
        if !self.0.audit {
            return;
        }
        match &self.0.audit_sink {
            Some(sink) => sink.record(event),
            None => event.emit(),
        }
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
        // Building the event costs allocations; skip it when nothing listens.
        let start = self.audit_wanted().then(Instant::now);
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
        if self.audit_wanted() {
            let route = self
                .0
                .policy
                .route_for(req.method, req.path)
                .map(|r| r.template());
            self.record(&AuditEvent {
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
            });
        }
    }

    fn emit(&self, result: &Result<Grant, Denial>, req: &RequestFacts<'_>, seen: &Seen, start: Instant) {
        let elapsed_us = start.elapsed().as_micros() as u64;
        let (decision, reason) = match result {
            Ok(_) => (AuditDecision::Allow, "ok"),
            Err(d) => (AuditDecision::Deny, d.reason()),
        };
        // What the token said; on a denial these may come from an unverified token.
        let parsed = match result {
            Ok(grant) => Some(grant.parsed()),
            Err(_) => seen.parsed.as_deref(),
        };
        let event = parsed.map(Parsed::audit_ids).unwrap_or_default().event(
            decision,
            reason,
            req.method.as_str(),
            seen.route.as_deref(),
            elapsed_us,
        );
        match result {
            Ok(grant) => self.record_token(&event, grant.parsed()),
            Err(_) => self.record(&event),
        }
    }

    /// [`record`](Self::record) for an allowed decision, whose event holds `parsed`'s fields.
    fn record_token(&self, event: &AuditEvent<'_>, parsed: &Parsed) {
        if !self.0.audit {
            return;
        }
        match &self.0.audit_sink {
            Some(sink) => sink.record_token(event, &TokenAudit(parsed)),
            None => event.emit(),
        }
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
        // The steps that never wait are plain functions: the async body keeps only the awaits,
        // so the code a request runs stays compact.
        let rule = self.0.policy.route_for(req.method, req.path);
        let now = self.0.clock.now();
        let admitted = match self.front(token.as_bytes(), |_| Ok(token), rule, now, req, seen)? {
            Front::Admitted(admitted) => admitted,
            Front::NeedsKeys(wait, _) => {
                let parsed = self.refresh_and_finish(token, wait, now, seen).await?;
                self.admit(parsed, rule, req, seen)?
            }
        };

        // The caller's check (e.g. the DPoP proof) comes before the stores, so a request it
        // refuses never reaches them and never burns a single-use jti.
        check(admitted.grant.clone()).await?;
        if self.needs_stores(&admitted) {
            self.stores(&admitted, now).await?;
        }
        Ok(admitted.grant)
    }

    /// [`verify`](Self::verify) without waiting, for callers on a hot path that can do
    /// without a future: the decision, audited exactly as `verify` audits it, whenever no
    /// store and no key refresh is involved, with `check` (a synchronous caller check, run
    /// where [`verify_with`](Self::verify_with) runs its own) already applied. Otherwise the
    /// work done so far, to be completed by [`finish`](Self::finish); nothing is checked twice.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use http::Method;
    /// use zsp_core::testing::TestIssuer;
    /// use zsp_core::{Policy, RequestFacts, RouteRule, Verifier};
    ///
    /// let issuer = TestIssuer::es256("https://broker.example");
    /// let policy = Policy::builder()
    ///     .issuer("https://broker.example")
    ///     .audience("api")
    ///     .route(RouteRule::get("/orders").all_of(["orders:read"]))
    ///     .route(RouteRule::post("/pay").all_of(["pay"]).single_use())
    ///     .build()?;
    /// let verifier = Verifier::builder(policy, issuer.key_set()).build();
    /// let no_check = |_: &zsp_core::Grant| Ok(());
    ///
    /// let token = issuer.token("api", &["orders:read"]).mint()?;
    /// let get = RequestFacts::new(&Method::GET, "/orders");
    /// let grant = match verifier.verify_now(&token, &get, no_check) {
    ///     Ok(decision) => decision?,
    ///     Err(unfinished) => verifier.finish(unfinished, &get, no_check).await?,
    /// };
    /// assert_eq!(grant.route(), Some("/orders"));
    ///
    /// // A single-use route needs the replay guard, which may wait: finished asynchronously.
    /// let token = issuer.token("api", &["pay"]).mint()?;
    /// let post = RequestFacts::new(&Method::POST, "/pay");
    /// let Err(unfinished) = verifier.verify_now(&token, &post, no_check) else {
    ///     return Err("decided without the replay guard".into());
    /// };
    /// assert!(verifier.finish(unfinished, &post, no_check).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn verify_now<C>(
        &self,
        token: &str,
        req: &RequestFacts<'_>,
        check: C,
    ) -> Result<Result<Grant, Denial>, Unfinished>
    where
        C: FnOnce(&Grant) -> Result<(), Denial>,
    {
        self.verify_bytes_now(token.as_bytes(), |_| Ok(token), req, check)
    }

    /// [`verify_now`](Self::verify_now) for a token still in the bytes it arrived in, such as
    /// an `Authorization` header's: `text` turns them into the token's text, checking whatever
    /// syntax the transport requires, and a denial of its is audited as the request's.
    ///
    /// Bytes this verifier verified before, and still holds in its signature cache, are
    /// recognised by comparing them whole, and `text` is not called for them: bytes that once
    /// verified are a compact JWS (base64url and two dots), which any check of a token's syntax
    /// accepts. A reused token is then compared once instead of also being scanned for its
    /// syntax and its UTF-8 first; everything else runs as in `verify_now`, `text` first.
    ///
    /// ```
    /// use http::Method;
    /// use zsp_core::testing::TestIssuer;
    /// use zsp_core::{Denial, Policy, RequestFacts, RouteRule, Verifier};
    ///
    /// let issuer = TestIssuer::es256("https://broker.example");
    /// let policy = Policy::builder()
    ///     .issuer("https://broker.example")
    ///     .audience("api")
    ///     .route(RouteRule::get("/orders").all_of(["orders:read"]))
    ///     .build()
    ///     .unwrap();
    /// let verifier = Verifier::builder(policy, issuer.key_set()).build();
    /// let get = RequestFacts::new(&Method::GET, "/orders");
    /// let text = |b: &'static [u8]| std::str::from_utf8(b).map_err(|_| Denial::Malformed("not UTF-8"));
    ///
    /// let token: &'static str = issuer.token("api", &["orders:read"]).mint().unwrap().leak();
    /// let decided = verifier.verify_bytes_now(token.as_bytes(), text, &get, |_| Ok(()));
    /// assert!(matches!(decided, Ok(Ok(_))));
    /// let refused = verifier.verify_bytes_now(b"\xff.x.y", text, &get, |_| Ok(()));
    /// assert!(matches!(refused, Ok(Err(Denial::Malformed("not UTF-8")))));
    /// ```
    pub fn verify_bytes_now<'t, C, T>(
        &self,
        token: &'t [u8],
        text: T,
        req: &RequestFacts<'_>,
        check: C,
    ) -> Result<Result<Grant, Denial>, Unfinished>
    where
        C: FnOnce(&Grant) -> Result<(), Denial>,
        T: FnOnce(&'t [u8]) -> Result<&'t str, Denial>,
    {
        let start = self.audit_wanted().then(Instant::now);
        let mut seen = Seen::default();
        let rule = self.0.policy.route_for(req.method, req.path);
        let now = self.0.clock.now();
        let result = match self.front(token, text, rule, now, req, &mut seen) {
            Err(denial) => Err(denial),
            Ok(Front::NeedsKeys(wait, token)) => {
                return Err(Unfinished {
                    state: Waiting::Keys(token.into(), wait),
                    seen,
                    start,
                    now,
                });
            }
            Ok(Front::Admitted(admitted)) => match check(&admitted.grant) {
                Err(denial) => Err(denial),
                Ok(()) if self.needs_stores(&admitted) => {
                    return Err(Unfinished {
                        state: Waiting::Stores(admitted),
                        seen,
                        start,
                        now,
                    });
                }
                Ok(()) => Ok(admitted.grant),
            },
        };
        if let Some(start) = start {
            self.emit(&result, req, &seen, start);
        }
        Ok(result)
    }

    /// Completes what [`verify_now`](Self::verify_now) could not, for the same request
    /// (`req`) and with the same `check`, and audits the outcome.
    pub async fn finish<C>(
        &self,
        unfinished: Unfinished,
        req: &RequestFacts<'_>,
        check: C,
    ) -> Result<Grant, Denial>
    where
        C: FnOnce(&Grant) -> Result<(), Denial>,
    {
        let Unfinished {
            state,
            mut seen,
            start,
            now,
        } = unfinished;
        let result = self.finish_inner(state, req, &mut seen, now, check).await;
        if let Some(start) = start {
            self.emit(&result, req, &seen, start);
        }
        result
    }

    async fn finish_inner<C>(
        &self,
        state: Waiting,
        req: &RequestFacts<'_>,
        seen: &mut Seen,
        now: UnixTime,
        check: C,
    ) -> Result<Grant, Denial>
    where
        C: FnOnce(&Grant) -> Result<(), Denial>,
    {
        let admitted = match state {
            // The caller's check ran before the stores were needed.
            Waiting::Stores(admitted) => admitted,
            Waiting::Keys(token, wait) => {
                let parsed = self.refresh_and_finish(&token, wait, now, seen).await?;
                let rule = self.0.policy.route_for(req.method, req.path);
                let admitted = self.admit(parsed, rule, req, seen)?;
                check(&admitted.grant)?;
                if !self.needs_stores(&admitted) {
                    return Ok(admitted.grant);
                }
                admitted
            }
        };
        self.stores(&admitted, now).await?;
        Ok(admitted.grant)
    }

    fn needs_stores(&self, admitted: &Admitted) -> bool {
        self.0.revocation.is_some() || admitted.single_use
    }

    /// Every check that needs no waiting, in order, up to the route's admission: or where
    /// they had to stop for a key refresh, with the token's text. `text` gives the text of
    /// the presented bytes, unless the signature cache knows them (see
    /// [`Self::verify_bytes_now`]).
    fn front<'t>(
        &self,
        token: &'t [u8],
        text: impl FnOnce(&'t [u8]) -> Result<&'t str, Denial>,
        rule: Option<&RouteRule>,
        now: UnixTime,
        req: &RequestFacts<'_>,
        seen: &mut Seen,
    ) -> Result<Front<'t>, Denial> {
        let parsed = match self.cached(token, rule, now, seen)? {
            Some(parsed) => parsed,
            None => {
                let token = match text(token) {
                    Ok(token) => token,
                    Err(denial) => {
                        // Audited with the route, as a denial of the credentials' syntax is.
                        seen.route = rule.map(RouteRule::template_arc);
                        return Err(denial);
                    }
                };
                let cache = self.admission(token, rule)?;
                match self.check_token_now(token, now, seen, cache)? {
                    Step::Done(parsed) => parsed,
                    Step::Refresh { kid, alg, had_set } => {
                        let wait = KeyWait {
                            kid,
                            alg,
                            had_set,
                            slot: cache.map(|(_, slot)| slot),
                        };
                        return Ok(Front::NeedsKeys(wait, token));
                    }
                }
            }
        };
        self.admit(parsed, rule, req, seen).map(Front::Admitted)
    }

    /// The signature cache's verified token with these very bytes, its time claims checked
    /// again: a token this verifier checked before skips straight to the checks that depend
    /// on time and on the request. Never on single-use routes, and nothing for bytes the size
    /// limits refuse ([`Self::admission`] refuses them).
    fn cached(
        &self,
        token: &[u8],
        rule: Option<&RouteRule>,
        now: UnixTime,
        seen: &mut Seen,
    ) -> Result<Option<Arc<Parsed>>, Denial> {
        let p = &self.0.policy;
        let Some(cache) = self.0.signature_cache.as_ref().filter(|_| {
            !token.is_empty() && token.len() <= p.max_token_bytes && rule.is_some_and(|r| !r.is_single_use())
        }) else {
            return Ok(None);
        };
        let slot = cache.slot(token);
        let hit = match &self.0.keys {
            Keys::Static(set) => cache.get(slot, token, set, now),
            Keys::Dynamic(src) => src.current().and_then(|set| cache.get(slot, token, &set, now)),
        };
        let Some(parsed) = hit else {
            return Ok(None);
        };
        let f = &parsed.fields;
        check_time(Some(f.exp), Some(f.iat), f.nbf, now, p)?;
        seen.parsed = Some(parsed.clone());
        Ok(Some(parsed))
    }

    /// Size limits; then where the token is to be filed in the signature cache once it
    /// verifies, if anywhere (never for single-use routes).
    fn admission<'c>(
        &'c self,
        token: &str,
        rule: Option<&RouteRule>,
    ) -> Result<Option<(&'c SignatureCache, u64)>, Denial> {
        let p = &self.0.policy;
        if token.is_empty() {
            return Err(Denial::MissingToken);
        }
        if token.len() > p.max_token_bytes {
            return Err(Denial::TokenTooLarge);
        }
        Ok(self
            .0
            .signature_cache
            .as_ref()
            .filter(|_| rule.is_some_and(|r| !r.is_single_use()))
            .map(|c| (c, c.slot(token.as_bytes()))))
    }

    /// The route's rules for a genuine token: scopes, source addresses, sender constraint,
    /// and what single use needs.
    fn admit(
        &self,
        parsed: Arc<Parsed>,
        rule: Option<&RouteRule>,
        req: &RequestFacts<'_>,
        seen: &mut Seen,
    ) -> Result<Admitted, Denial> {
        let p = &self.0.policy;
        let f = &parsed.fields;
        let rule = rule.ok_or(Denial::RouteNotAllowed)?;
        seen.route = Some(rule.template_arc());
        if !rule.scopes().is_satisfied_with(|s| parsed.has_scope(s)) {
            return Err(insufficient_scope(rule));
        }
        if !rule.source_cidrs().is_empty() {
            let ok = req
                .client_ip
                .is_some_and(|ip| rule.source_cidrs().iter().any(|c| c.contains(ip)));
            if !ok {
                return Err(Denial::SourceNotAllowed);
            }
        }
        if !p.client_cidrs.is_empty()
            && let Some(cidrs) = parsed.text(&f.client_id).and_then(|c| p.client_cidrs(c))
        {
            let ok = req
                .client_ip
                .is_some_and(|ip| cidrs.iter().any(|c| c.contains(ip)));
            if !ok {
                return Err(Denial::SourceNotAllowed);
            }
        }
        if rule.is_sender_constrained() && parsed.text(&f.jkt).is_none() {
            return Err(Denial::SenderConstraintRequired);
        }
        let single_use = rule.is_single_use() || f.single_use;
        if single_use && parsed.text(&f.jti).is_none() {
            return Err(Denial::MissingClaim("jti"));
        }
        let until = f.exp.saturating_add(p.leeway);
        Ok(Admitted {
            grant: Grant::new(parsed, seen.route.clone()),
            single_use,
            until,
        })
    }

    /// Revocation, then first use of a single-use jti: the only checks that ask a store.
    async fn stores(&self, admitted: &Admitted, now: UnixTime) -> Result<(), Denial> {
        let parsed = admitted.grant.parsed();
        let f = &parsed.fields;
        let (single_use, until) = (admitted.single_use, admitted.until);
        let jti = parsed.text(&f.jti);
        let mut recorded = false;
        if let Some(rev) = &self.0.revocation {
            let q = RevocationQuery {
                jti,
                sub: parsed.text(&f.sub),
                client_id: parsed.text(&f.client_id),
                iat: f.iat,
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
                return Err(d);
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
                return Err(d);
            }
        }
        Ok(())
    }

    /// After [`check_token_now`](Self::check_token_now) stopped at a `kid` the dynamic keys
    /// do not have: one coalesced refresh, then the rest of the token's checks with the key
    /// it brought. A token that verifies goes into the signature cache unless single-use.
    async fn refresh_and_finish(
        &self,
        token: &str,
        wait: KeyWait,
        now: UnixTime,
        seen: &mut Seen,
    ) -> Result<Arc<Parsed>, Denial> {
        let KeyWait {
            kid,
            alg,
            had_set,
            slot,
        } = wait;
        let Keys::Dynamic(src) = &self.0.keys else {
            return Err(Denial::UnknownKey);
        };
        let refreshed = match src.refresh_for_unknown_kid(kid.as_deref()).await {
            Some(s) => s,
            None if had_set => return Err(Denial::UnknownKey),
            None => return Err(Denial::KeysUnavailable),
        };
        let key = refreshed.get(kid.as_deref()).ok_or(Denial::UnknownKey)?;
        if key.algorithm() != alg {
            return Err(Denial::AlgorithmMismatch);
        }
        let segments = segments(token)?;
        let cache = self.0.signature_cache.as_ref().zip(slot);
        self.finish_token(token, segments, key, kid.is_some(), false, now, seen, cache)
    }

    /// Everything about the token itself, cheapest first: shape, header, key, claims, and
    /// last the signature, up to the point where it would have to wait for keys (an unknown
    /// kid with dynamic keys). Never inlined into [`Self::front`]: a signature-cache hit then
    /// runs through compact code, and a miss pays one call beside its signature check.
    #[inline(never)]
    fn check_token_now(
        &self,
        token: &str,
        now: UnixTime,
        seen: &mut Seen,
        cache: Option<(&SignatureCache, u64)>,
    ) -> Result<Step, Denial> {
        let segments = segments(token)?;
        let h64 = segments[0];
        let current = match &self.0.keys {
            Keys::Static(_) => None,
            Keys::Dynamic(src) => src.current(),
        };
        let set = match &self.0.keys {
            Keys::Static(set) => Some(&**set),
            Keys::Dynamic(_) => current.as_deref(),
        };
        let memo = self.0.header_memo.get(h64.as_bytes(), set);
        let lookup = match memo {
            Some((key, named)) => KeyLookup::Found(key, named),
            None => self.header_key(h64.as_bytes(), set)?,
        };
        match lookup {
            KeyLookup::Found(key, named) => self
                .finish_token(token, segments, key, named, memo.is_some(), now, seen, cache)
                .map(Step::Done),
            KeyLookup::Missing { kid, alg } => Ok(Step::Refresh {
                kid,
                alg,
                had_set: set.is_some(),
            }),
        }
    }

    /// Claims and signature with the token's key; then the header memo and the signature
    /// cache learn a token that verified.
    #[allow(clippy::too_many_arguments)]
    fn finish_token(
        &self,
        token: &str,
        segments: [&str; 3],
        key: &VerifyingKey,
        named: bool,
        memoized: bool,
        now: UnixTime,
        seen: &mut Seen,
        cache: Option<(&SignatureCache, u64)>,
    ) -> Result<Arc<Parsed>, Denial> {
        let parsed = self.check_claims_and_signature(token, segments, key, now, seen)?;
        if !memoized {
            self.0.header_memo.remember(segments[0].as_bytes(), key, named);
        }
        if let Some((c, slot)) = cache
            && !parsed.fields.single_use
        {
            let until = parsed.fields.exp.saturating_add(self.0.policy.leeway);
            c.insert(slot, key, named, parsed.clone(), until, now);
        }
        Ok(parsed)
    }

    /// The header's checks and its key in `set`, or the `kid` to refresh the keys for.
    fn header_key<'k>(&self, h64: &[u8], set: Option<&'k KeySet>) -> Result<KeyLookup<'k>, Denial> {
        let p = &self.0.policy;
        // Header: small, decoded on the stack.
        let mut hbuf = [0u8; 1024];
        let hlen = crate::b64::decode_into(h64, &mut hbuf).ok_or(Denial::Malformed("header base64"))?;
        let header = Header::parse(&hbuf[..hlen]).ok_or(Denial::Malformed("header JSON"))?;
        let alg = parse_alg(&header.alg).ok_or(Denial::UnsupportedAlgorithm)?;
        if !p.algorithms.contains(&alg) {
            return Err(Denial::AlgorithmNotAllowed);
        }
        // zsp understands no JWS extensions (RFC 7515 §4.1.11): any crit is unknown to it.
        if header.crit.is_some() {
            return Err(Denial::UnsupportedCritical);
        }
        check_typ(header.typ.as_deref(), p.require_at_jwt)?;
        let kid = header.kid.as_deref();
        match set.and_then(|s| s.get(kid)) {
            Some(key) if key.algorithm() != alg => Err(Denial::AlgorithmMismatch),
            Some(key) => Ok(KeyLookup::Found(key, kid.is_some())),
            None if matches!(self.0.keys, Keys::Static(_)) => Err(Denial::UnknownKey),
            None => Ok(KeyLookup::Missing {
                kid: kid.map(str::to_owned),
                alg,
            }),
        }
    }

    /// The claims (before the signature: all 401 `invalid_token`), then the signature.
    fn check_claims_and_signature(
        &self,
        token: &str,
        [h64, p64, s64]: [&str; 3],
        key: &VerifyingKey,
        now: UnixTime,
        seen: &mut Seen,
    ) -> Result<Arc<Parsed>, Denial> {
        let p = &self.0.policy;
        let payload = crate::b64::decode_vec(p64.as_bytes()).ok_or(Denial::Malformed("payload base64"))?;
        // JSON text is UTF-8 (RFC 8259 §8.1); checked once here, so the grant reads its claims
        // as text without checking again.
        let payload = String::from_utf8(payload).map_err(|_| Denial::Malformed("payload JSON"))?;
        let fields = {
            // The flat scanner reads the common shape straight into borrowed fields; anything
            // else goes through serde_json into a view they borrow from.
            let view: ClaimsView<'_>;
            let c = match Checked::parse_flat(&payload) {
                Some(c) => c,
                None => {
                    view = claims_by_serde(&payload)?;
                    view.checked()
                }
            };
            check_time(c.exp, c.iat, c.nbf, now, p)?;
            match c.iss {
                None => return Err(Denial::MissingClaim("iss")),
                Some(iss) if !p.issuers.iter().any(|i| i == iss) => return Err(Denial::InvalidIssuer),
                _ => {}
            }
            match c.audience_matches(|a| p.accepts_audience_str(a)) {
                None => return Err(Denial::MissingClaim("aud")),
                Some(false) => return Err(Denial::InvalidAudience),
                Some(true) => {}
            }
            Fields::of(&payload, &c)
        };
        let parsed = Arc::new(Parsed::new(token, payload, fields));
        seen.parsed = Some(parsed.clone());

        let mut sbuf = [0u8; 1024];
        let slen = crate::b64::decode_into(s64.as_bytes(), &mut sbuf).ok_or(Denial::InvalidSignature)?;
        if slen == 0 {
            return Err(Denial::InvalidSignature);
        }
        let signing_input = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        if !key.verify(signing_input, &sbuf[..slen]) {
            return Err(Denial::InvalidSignature);
        }
        Ok(parsed)
    }
}

/// A token the route admits, before the caller's check and the stores.
struct Admitted {
    grant: Grant,
    single_use: bool,
    /// When a single-use record of its jti may be forgotten.
    until: UnixTime,
}

/// A verification that [`Verifier::verify_now`] had to leave for
/// [`Verifier::finish`]: it waits for a key refresh or for the revocation and replay stores.
#[must_use = "finish it with Verifier::finish, or the request is neither allowed nor audited"]
pub struct Unfinished {
    state: Waiting,
    seen: Seen,
    start: Option<Instant>,
    now: UnixTime,
}

impl std::fmt::Debug for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let waits_for = match self.state {
            Waiting::Keys(..) => "keys",
            Waiting::Stores(_) => "stores",
        };
        f.debug_struct("Unfinished")
            .field("waits_for", &waits_for)
            .finish_non_exhaustive()
    }
}

enum Waiting {
    /// The token (owned: the wait outlives the caller's borrow) and the key it names.
    Keys(Box<str>, KeyWait),
    /// Admitted and checked by the caller; revocation and replay remain.
    Stores(Admitted),
}

/// The unknown key a token names, and where the signature cache would file the token.
struct KeyWait {
    kid: Option<String>,
    alg: Algorithm,
    /// Whether there was a key set at all (else the keys are unavailable).
    had_set: bool,
    slot: Option<u64>,
}

/// Where a request stands after every check that needs no waiting.
enum Front<'t> {
    Admitted(Admitted),
    /// With the token's text: the wait outlives the request's borrow of it.
    NeedsKeys(KeyWait, &'t str),
}

/// Where a token stands after the checks that need no waiting.
enum Step {
    Done(Arc<Parsed>),
    /// The header names a key the dynamic set does not have (yet).
    Refresh {
        kid: Option<String>,
        alg: Algorithm,
        /// Whether there was a key set at all (else the keys are unavailable).
        had_set: bool,
    },
}

/// The three non-empty-headed segments of a compact JWS: header, payload, signature.
fn segments(token: &str) -> Result<[&str; 3], Denial> {
    let malformed = || Denial::Malformed("not a compact JWS");
    let (h64, rest) = split_dot(token).ok_or_else(malformed)?;
    let (p64, s64) = split_dot(rest).ok_or_else(malformed)?;
    if memchr::memchr(b'.', s64.as_bytes()).is_some() {
        return Err(malformed());
    }
    if h64.is_empty() || p64.is_empty() {
        return Err(Denial::Malformed("empty segment"));
    }
    Ok([h64, p64, s64])
}

/// Where the header's key stands.
enum KeyLookup<'k> {
    /// In the current set; whether the token named it by `kid`.
    Found(&'k VerifyingKey, bool),
    /// Not in the current (dynamic) set, or there is no set yet.
    Missing { kid: Option<String>, alg: Algorithm },
}

/// Splits at the first `.` (a SIMD search: tokens are hundreds of bytes).
fn split_dot(s: &str) -> Option<(&str, &str)> {
    let i = memchr::memchr(b'.', s.as_bytes())?;
    Some((s.get(..i)?, s.get(i + 1..)?))
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

/// Claims the flat scanner does not take (nested `cnf` or `act`, lists, escapes), through
/// serde_json. Out of line: it is the rare path, and serde's code kept out of the caller
/// leaves the common path's code compact.
#[cold]
#[inline(never)]
fn claims_by_serde(payload: &str) -> Result<ClaimsView<'_>, Denial> {
    serde_json::from_str(payload).map_err(|_| Denial::Malformed("payload JSON"))
}

/// Out of line: the challenge is built only for a denial, and kept out of `admit` it leaves
/// the allowed path's code compact.
#[cold]
#[inline(never)]
fn insufficient_scope(rule: &RouteRule) -> Denial {
    Denial::InsufficientScope {
        required: rule.scopes().to_challenge(),
    }
}

fn check_time(
    exp: Option<UnixTime>,
    iat: Option<UnixTime>,
    nbf: Option<UnixTime>,
    now: UnixTime,
    p: &Policy,
) -> Result<(), Denial> {
    let exp = exp.ok_or(Denial::MissingClaim("exp"))?;
    let iat = iat.ok_or(Denial::MissingClaim("iat"))?;
    let leeway = p.leeway;
    // RFC 7519 §4.1.4: valid only while now < exp; leeway extends that.
    if now >= exp.saturating_add(leeway) {
        return Err(Denial::Expired);
    }
    if let Some(nbf) = nbf
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

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(h: &Header<'_>) -> (String, Option<String>, Option<String>, bool) {
        (
            h.alg.to_string(),
            h.kid.as_deref().map(str::to_owned),
            h.typ.as_deref().map(str::to_owned),
            h.crit.is_some(),
        )
    }

    proptest::proptest! {
        /// The flat fast path reads a header exactly as serde_json does, whenever it answers.
        #[test]
        fn flat_header_agrees_with_serde(
            members in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["alg", "kid", "typ", "crit", "jku", "x5u"]),
                    proptest::sample::select(vec![
                        "\"ES256\"", "\"k-1\"", "\"at+jwt\"", "null", "7", "true", "[\"exp\"]",
                        "{}", "\"a\\\"b\"", "-1",
                    ]),
                ),
                0..6,
            )
        ) {
            let body: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let json = format!("{{{}}}", body.join(","));
            let serde: Result<Header<'_>, _> = serde_json::from_slice(json.as_bytes());
            if let Some(flat) = Header::parse_flat(json.as_bytes()) {
                let serde = serde.expect("serde_json accepts what the fast path accepts");
                proptest::prop_assert_eq!(summary(&flat), summary(&serde));
            }
            let ours = Header::parse(json.as_bytes()).map(|h| summary(&h));
            let theirs = serde_json::from_slice::<Header<'_>>(json.as_bytes()).ok().map(|h| summary(&h));
            proptest::prop_assert_eq!(ours, theirs);
        }
    }
}
