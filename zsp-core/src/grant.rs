//! What a verified request is allowed to do: the handler's view of the token.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::claims::{Actor, Audience, Claims, Confirmation, ScopeSet};
use crate::clock::UnixTime;

struct Inner {
    claims: Claims,
    scopes: ScopeSet,
    payload: Vec<u8>,
    route: Option<Arc<str>>,
    token: Arc<str>,
}

/// A verified token, placed in request extensions by the inbound layer. Cheap to clone.
///
/// `Debug` never prints the token itself.
#[derive(Clone)]
pub struct Grant(Arc<Inner>);

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("iss", &self.0.claims.iss)
            .field("sub", &self.0.claims.sub)
            .field("client_id", &self.0.claims.client_id)
            .field("jti", &self.0.claims.jti)
            .field("scopes", &self.0.scopes)
            .field("exp", &self.0.claims.exp)
            .finish_non_exhaustive()
    }
}

impl Grant {
    pub(crate) fn new(
        claims: Claims,
        scopes: ScopeSet,
        payload: Vec<u8>,
        route: Option<Arc<str>>,
        token: Arc<str>,
    ) -> Self {
        Grant(Arc::new(Inner {
            claims,
            scopes,
            payload,
            route,
            token,
        }))
    }

    /// The registered claims.
    pub fn registered(&self) -> &Claims {
        &self.0.claims
    }
    /// Issuer.
    pub fn issuer(&self) -> &str {
        self.0.claims.iss.as_deref().unwrap_or_default()
    }
    /// Subject, if the token has one.
    pub fn subject(&self) -> Option<&str> {
        self.0.claims.sub.as_deref()
    }
    /// Client id, if the token has one.
    pub fn client_id(&self) -> Option<&str> {
        self.0.claims.client_id.as_deref()
    }
    /// Granted scopes (`scope` and `scp` merged).
    pub fn scopes(&self) -> &ScopeSet {
        &self.0.scopes
    }
    /// Audience.
    pub fn audience(&self) -> Option<&Audience> {
        self.0.claims.aud.as_ref()
    }
    /// Expiry (unix seconds).
    pub fn expires_at(&self) -> UnixTime {
        self.0.claims.exp.unwrap_or_default()
    }
    /// Issued at (unix seconds).
    pub fn issued_at(&self) -> UnixTime {
        self.0.claims.iat.unwrap_or_default()
    }
    /// Token id.
    pub fn jti(&self) -> Option<&str> {
        self.0.claims.jti.as_deref()
    }
    /// Confirmation (the key a sender-constrained token is bound to).
    pub fn cnf(&self) -> Option<&Confirmation> {
        self.0.claims.cnf.as_ref()
    }
    /// The delegation chain (RFC 8693 `act`).
    pub fn act(&self) -> Option<&Actor> {
        self.0.claims.act.as_ref()
    }
    /// The route template the request matched.
    pub fn route(&self) -> Option<&str> {
        self.0.route.as_deref()
    }
    /// All claims, typed by the caller (custom claims included), parsed from the verified
    /// payload on demand.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use zsp_core::{testing::TestIssuer, *};
    /// #[derive(serde::Deserialize)]
    /// struct Tenant { tenant: String }
    /// let issuer = TestIssuer::es256("https://i");
    /// let token = issuer.token("api", &[]).claim("tenant", "acme").mint().unwrap();
    /// let policy = Policy::builder().issuer("https://i").audience("api")
    ///     .default_route(RouteRule::any("/{*p}")).build().unwrap();
    /// let grant = Verifier::builder(policy, issuer.key_set()).build()
    ///     .verify(&token, &RequestFacts::new(&http::Method::GET, "/x")).await.unwrap();
    /// assert_eq!(grant.claims::<Tenant>().unwrap().tenant, "acme");
    /// # }
    /// ```
    pub fn claims<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.0.payload)
    }
    /// One claim by name, typed; `None` if absent or of another type.
    pub fn claim<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&self.0.payload).ok()?;
        map.get(name).and_then(|v| T::deserialize(v).ok())
    }
    /// The access token itself, for token exchange (RFC 8693 `subject_token`). It is a
    /// credential: never log it.
    pub fn token(&self) -> &str {
        &self.0.token
    }
    /// A short, non-reversible fingerprint of the token for logs (first 8 bytes of its SHA-256,
    /// hex).
    pub fn fingerprint(&self) -> String {
        let h = crate::crypto::sha256(self.0.token.as_bytes());
        h[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}
