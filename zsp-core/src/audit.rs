//! One audit event per decision: by default through `tracing` with target `zsp::audit`, or to
//! an [`AuditSink`] of your own ([`crate::VerifierBuilder::audit_sink`]), such as
//! [`JsonLinesAudit`].
//!
//! Route tracing audit events to their own sink with a target filter, e.g. with
//! tracing-subscriber: `EnvFilter::new("zsp::audit=info")` on a dedicated layer. Events carry
//! the decision, the internal reason, iss, sub, client_id, jti, method, route template, scopes
//! and the time the decision took; never the token (DESIGN invariant 6).
//!
//! Cost: a tracing event goes through the subscriber's generic field formatting; with
//! tracing-subscriber's `fmt` layer that (with the request span it sits in) is a couple of
//! microseconds per request, more than everything else the verifier does for a token it has
//! seen before. [`JsonLinesAudit`] writes the same record as one JSON line for a fraction of
//! that (see BENCHMARKS.md).

#[cfg(feature = "audit-layer")]
pub use crate::audit_layer::JsonAuditLayer;
pub use crate::audit_log::JsonLinesAudit;

use tracing::info;

use crate::grant::Parsed;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditDecision {
    /// The request was allowed.
    Allow,
    /// The request was denied.
    Deny,
}

impl AuditDecision {
    /// `"allow"` or `"deny"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allow => "allow",
            AuditDecision::Deny => "deny",
        }
    }
}

/// The record of one decision. Fields the token did not yield (or that were never reached)
/// are `None`.
#[derive(Debug, Clone, Copy)]
pub struct AuditEvent<'a> {
    /// Allow or deny.
    pub decision: AuditDecision,
    /// `"ok"` or the denial's [`crate::Denial::reason`].
    pub reason: &'a str,
    /// Issuer.
    pub iss: Option<&'a str>,
    /// Subject.
    pub sub: Option<&'a str>,
    /// Client id.
    pub client_id: Option<&'a str>,
    /// Token id.
    pub jti: Option<&'a str>,
    /// HTTP method.
    pub method: &'a str,
    /// The matched route template (not the raw path, which may carry identifiers).
    pub route: Option<&'a str>,
    /// Granted scopes, space-delimited.
    pub scopes: Option<&'a str>,
    /// Time the decision took, in microseconds.
    pub elapsed_us: u64,
}

/// Where a verifier's audit events go, instead of `tracing`.
///
/// Called once per decision, on the request's task: keep it short (format into a buffer, hand
/// off to a channel) and never block on I/O for long.
pub trait AuditSink: Send + Sync + std::fmt::Debug + 'static {
    /// Records one decision.
    fn record(&self, event: &AuditEvent<'_>);

    /// Records an allowed decision on a verified token: `event`'s `iss`, `sub`, `client_id`,
    /// `jti` and `scopes` are `token`'s. A token reused within its lifetime brings the same
    /// fields on every request, so a sink that formats them can do that once per token
    /// ([`JsonLinesAudit`] keeps them escaped with the token). The default ignores `token`.
    ///
    /// A sink that passes events on to another sink after changing any of those fields
    /// (redacting `sub`, say) must pass them on with [`record`](Self::record): the inner
    /// sink may write the token's own fields instead of the event's.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use http::Method;
    /// use zsp_core::audit::{AuditEvent, AuditSink, JsonLinesAudit, TokenAudit};
    /// use zsp_core::testing::TestIssuer;
    /// use zsp_core::{Policy, RequestFacts, RouteRule, Verifier};
    ///
    /// /// Every decision as a JSON line, and a count of the allowed ones.
    /// #[derive(Debug)]
    /// struct Counted {
    ///     lines: JsonLinesAudit<std::io::Sink>,
    ///     allowed: AtomicU64,
    /// }
    ///
    /// impl AuditSink for Counted {
    ///     fn record(&self, event: &AuditEvent<'_>) {
    ///         self.lines.record(event);
    ///     }
    ///     // The event goes on unchanged, so the inner sink may use the token's kept fields.
    ///     fn record_token(&self, event: &AuditEvent<'_>, token: &TokenAudit<'_>) {
    ///         self.allowed.fetch_add(1, Ordering::Relaxed);
    ///         self.lines.record_token(event, token);
    ///     }
    /// }
    ///
    /// let issuer = TestIssuer::es256("https://broker.example");
    /// let policy = Policy::builder()
    ///     .issuer("https://broker.example")
    ///     .audience("api")
    ///     .route(RouteRule::get("/orders").all_of(["orders:read"]))
    ///     .build()?;
    /// let sink = Arc::new(Counted { lines: JsonLinesAudit::new(std::io::sink()), allowed: AtomicU64::new(0) });
    /// let verifier = Verifier::builder(policy, issuer.key_set()).audit_sink(sink.clone()).build();
    /// let token = issuer.token("api", &["orders:read"]).mint()?;
    /// let facts = RequestFacts::new(&Method::GET, "/orders");
    /// assert!(verifier.verify(&token, &facts).await.is_ok());
    /// assert!(verifier.verify(&token, &facts).await.is_ok());
    /// assert!(verifier.verify("not-a-token", &facts).await.is_err());
    /// assert_eq!(sink.allowed.load(Ordering::Relaxed), 2);
    /// # Ok(())
    /// # }
    /// ```
    fn record_token(&self, event: &AuditEvent<'_>, token: &TokenAudit<'_>) {
        let _ = token;
        self.record(event);
    }
}

/// The token behind an allowed decision, handed to [`AuditSink::record_token`] beside its
/// event. Only a verifier makes one.
pub struct TokenAudit<'a>(pub(crate) &'a Parsed);

impl std::fmt::Debug for TokenAudit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token or its claims: audit records carry only the event's fields.
        f.debug_struct("TokenAudit").finish_non_exhaustive()
    }
}

/// A token's fields of an audit event ([`Parsed::audit_ids`]): one source for the event a
/// verifier records and for the fields a sink keeps per token, so the two cannot differ.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AuditIds<'a> {
    pub iss: Option<&'a str>,
    pub sub: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub jti: Option<&'a str>,
    /// The scopes in their display form.
    pub scopes: Option<&'a str>,
}

impl<'a> AuditIds<'a> {
    /// The event of a decision on a token with these fields.
    pub(crate) fn event(
        self,
        decision: AuditDecision,
        reason: &'a str,
        method: &'a str,
        route: Option<&'a str>,
        elapsed_us: u64,
    ) -> AuditEvent<'a> {
        AuditEvent {
            decision,
            reason,
            iss: self.iss,
            sub: self.sub,
            client_id: self.client_id,
            jti: self.jti,
            method,
            route,
            scopes: self.scopes,
            elapsed_us,
        }
    }
}

impl AuditEvent<'_> {
    /// Emits the event on target `zsp::audit`.
    pub fn emit(&self) {
        info!(
            target: "zsp::audit",
            decision = self.decision.as_str(),
            reason = self.reason,
            iss = self.iss,
            sub = self.sub,
            client_id = self.client_id,
            jti = self.jti,
            method = self.method,
            route = self.route,
            scopes = self.scopes,
            elapsed_us = self.elapsed_us,
            "authorization decision"
        );
    }
}
