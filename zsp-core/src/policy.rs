//! What is allowed: issuers, audience, algorithms, lifetimes and per-route rules.
//!
//! A [`Policy`] is built once (from code through [`PolicyBuilder`], or from a file through the
//! serde form [`PolicyConfig`]), validated at `build()`, and then only read. Route rules are
//! matched in order, first match wins; a request that matches no rule is denied unless a
//! default rule is configured.
//!
//! # Context rules: source addresses
//!
//! A route ([`RouteRule::from_cidrs`]) or a client ([`PolicyBuilder::client_from_cidrs`]) may be
//! limited to source networks. Tokens carry no address claim: a token says who the caller is,
//! never where it calls from, so a stolen token cannot vouch for its own origin. The verifier
//! compares [`crate::RequestFacts::client_ip`] — the peer address of the connection, or, only
//! when the inbound layer is configured to trust one, the right-most entry of a proxy header —
//! with the CIDRs. When a rule has CIDRs and the address is unknown, the request is denied
//! (`SourceNotAllowed`, 403). A client rule applies to tokens whose `client_id` names it, on
//! every route, in addition to the route's own CIDRs. IPv4-mapped IPv6 addresses match IPv4
//! networks.

use std::net::IpAddr;
use std::time::Duration;

use http::Method;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use crate::claims::ScopeSet;

/// Default cap on `exp − iat`: anything longer is a standing credential.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(300);
/// Default clock-skew allowance on `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(10);
/// Default maximum token size, checked before any parsing.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The longest `max_lifetime` a policy may configure.
pub const MAX_CONFIGURABLE_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The largest leeway a policy may configure. Leeway extends every token past its `exp`: an
/// unbounded one (a typo in a policy file, `u64::MAX`) would silently turn every token into a
/// standing credential, so it is capped at five minutes, the default lifetime cap.
pub const MAX_CONFIGURABLE_LEEWAY: Duration = Duration::from_secs(300);

/// Why a policy could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// No trusted issuer configured.
    #[error("at least one issuer is required")]
    MissingIssuer,
    /// No audience configured.
    #[error("the service's audience is required")]
    MissingAudience,
    /// The algorithm list is empty.
    #[error("at least one algorithm is required")]
    NoAlgorithms,
    /// An algorithm name is not a known JOSE algorithm (`none` is never one).
    #[error("unknown or forbidden algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// `max_lifetime` is zero or above 24 h.
    #[error("max_lifetime must be between 1 s and 24 h")]
    InvalidLifetime,
    /// The leeway is above [`MAX_CONFIGURABLE_LEEWAY`].
    #[error("leeway must be at most 300 s")]
    InvalidLeeway,
    /// `max_token_bytes` is out of range.
    #[error("max_token_bytes must be between 256 and 65536")]
    InvalidTokenSize,
    /// A route template is malformed.
    #[error("invalid route template {0:?}")]
    InvalidTemplate(String),
    /// A method name is invalid.
    #[error("invalid method {0:?}")]
    InvalidMethod(String),
    /// A CIDR is malformed.
    #[error("invalid CIDR {0:?}")]
    InvalidCidr(String),
    /// A scope is empty or contains characters RFC 6749 §3.3 forbids.
    #[error("invalid scope {0:?}")]
    InvalidScope(String),
    /// `require_typ` names something other than `at+jwt`.
    #[error("require_typ must be \"at+jwt\"")]
    InvalidTyp,
}

/// Which scopes a route requires.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ScopeRequirement {
    /// Any valid token for this audience.
    #[default]
    None,
    /// Every listed scope.
    AllOf(Vec<String>),
    /// At least one of the listed scopes.
    AnyOf(Vec<String>),
}

impl ScopeRequirement {
    /// Whether `granted` satisfies the requirement.
    pub fn is_satisfied_by(&self, granted: &ScopeSet) -> bool {
        self.is_satisfied_with(|s| granted.contains(s))
    }
    /// Whether a grant holding exactly the scopes for which `has` is true satisfies the
    /// requirement.
    pub fn is_satisfied_with(&self, has: impl Fn(&str) -> bool) -> bool {
        match self {
            ScopeRequirement::None => true,
            ScopeRequirement::AllOf(req) => req.iter().all(|s| has(s)),
            ScopeRequirement::AnyOf(req) => req.iter().any(|s| has(s)),
        }
    }
    /// The scopes as a challenge `scope` value.
    pub fn to_challenge(&self) -> String {
        match self {
            ScopeRequirement::None => String::new(),
            ScopeRequirement::AllOf(s) | ScopeRequirement::AnyOf(s) => s.join(" "),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
    Rest,
}

/// An IP network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies inside the network. IPv4-mapped IPv6 addresses match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let err = || PolicyError::InvalidCidr(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A rule for requests matching (method, path template).
///
/// Templates use axum's syntax: `/orders/{id}` matches one segment, `/files/{*path}` matches
/// the rest of the path.
///
/// ```
/// use zsp_core::RouteRule;
/// let rule = RouteRule::post("/orders").all_of(["orders:write"]).single_use();
/// assert!(rule.matches(&http::Method::POST, "/orders"));
/// assert!(!rule.matches(&http::Method::GET, "/orders"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    method: Option<Method>,
    template: std::sync::Arc<str>,
    segments: Result<Vec<Segment>, String>,
    scopes: ScopeRequirement,
    single_use: bool,
    sender_constrained: bool,
    source_cidrs: Vec<Cidr>,
    cidr_error: Option<String>,
}

fn parse_template(t: &str) -> Result<Vec<Segment>, String> {
    if !t.starts_with('/') {
        return Err(t.to_owned());
    }
    let parts: Vec<&str> = t[1..].split('/').collect();
    let mut out = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        if let Some(inner) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if let Some(name) = inner.strip_prefix('*') {
                if name.is_empty() || i + 1 != parts.len() {
                    return Err(t.to_owned());
                }
                out.push(Segment::Rest);
            } else if inner.is_empty() || inner.contains(['{', '}']) {
                return Err(t.to_owned());
            } else {
                out.push(Segment::Param);
            }
        } else if p.contains(['{', '}']) {
            return Err(t.to_owned());
        } else {
            out.push(Segment::Literal((*p).to_owned()));
        }
    }
    Ok(out)
}

impl RouteRule {
    /// A rule for `method` (any method when `None`) and `template`.
    pub fn new(method: Option<Method>, template: &str) -> Self {
        RouteRule {
            method,
            template: template.into(),
            segments: parse_template(template),
            scopes: ScopeRequirement::None,
            single_use: false,
            sender_constrained: false,
            source_cidrs: Vec::new(),
            cidr_error: None,
        }
    }
    /// A rule for any method.
    pub fn any(template: &str) -> Self {
        Self::new(None, template)
    }
    /// A `GET` rule (which also covers `HEAD`).
    pub fn get(template: &str) -> Self {
        Self::new(Some(Method::GET), template)
    }
    /// A `POST` rule.
    pub fn post(template: &str) -> Self {
        Self::new(Some(Method::POST), template)
    }
    /// A `PUT` rule.
    pub fn put(template: &str) -> Self {
        Self::new(Some(Method::PUT), template)
    }
    /// A `PATCH` rule.
    pub fn patch(template: &str) -> Self {
        Self::new(Some(Method::PATCH), template)
    }
    /// A `DELETE` rule.
    pub fn delete(template: &str) -> Self {
        Self::new(Some(Method::DELETE), template)
    }
    /// Requires every listed scope.
    pub fn all_of<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = ScopeRequirement::AllOf(scopes.into_iter().map(Into::into).collect());
        self
    }
    /// Requires at least one of the listed scopes.
    pub fn any_of<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = ScopeRequirement::AnyOf(scopes.into_iter().map(Into::into).collect());
        self
    }
    /// Each token is accepted once on this route (its `jti` goes to the replay guard).
    pub fn single_use(mut self) -> Self {
        self.single_use = true;
        self
    }
    /// Sets single use explicitly.
    pub fn with_single_use(mut self, on: bool) -> Self {
        self.single_use = on;
        self
    }
    /// Only sender-constrained (DPoP-bound, `cnf.jkt`) tokens are accepted on this route.
    pub fn sender_constrained(mut self) -> Self {
        self.sender_constrained = true;
        self
    }
    /// Limits the route to clients whose source address is inside one of `cidrs`.
    pub fn from_cidrs<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, cidrs: I) -> Self {
        for c in cidrs {
            match c.as_ref().parse() {
                Ok(c) => self.source_cidrs.push(c),
                Err(_) => self.cidr_error = Some(c.as_ref().to_owned()),
            }
        }
        self
    }

    /// The path template, as audit events report it.
    pub fn template(&self) -> &str {
        &self.template
    }
    /// The template as a shared string, cheap to hand to each request's `Grant`.
    pub fn template_arc(&self) -> std::sync::Arc<str> {
        self.template.clone()
    }
    /// The method, `None` for any.
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }
    /// The scope requirement.
    pub fn scopes(&self) -> &ScopeRequirement {
        &self.scopes
    }
    /// Whether tokens are single-use on this route.
    pub fn is_single_use(&self) -> bool {
        self.single_use
    }
    /// Whether the route requires sender-constrained tokens.
    pub fn is_sender_constrained(&self) -> bool {
        self.sender_constrained
    }
    /// The source CIDRs the route is limited to (empty: no limit).
    pub fn source_cidrs(&self) -> &[Cidr] {
        &self.source_cidrs
    }

    /// Whether the rule matches `method` and `path` (the path without query string).
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        if let Some(m) = &self.method
            && m != method
            && !(m == Method::GET && method == Method::HEAD)
        {
            return false;
        }
        let Ok(segments) = &self.segments else {
            return false;
        };
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = PathParts(Some(rest));
        for seg in segments {
            match seg {
                Segment::Rest => return true,
                Segment::Literal(l) => {
                    if parts.next() != Some(l.as_str()) {
                        return false;
                    }
                }
                Segment::Param => match parts.next() {
                    Some(p) if !p.is_empty() => {}
                    _ => return false,
                },
            }
        }
        parts.next().is_none()
    }

    fn validate(&self) -> Result<(), PolicyError> {
        if self.segments.is_err() {
            return Err(PolicyError::InvalidTemplate(self.template.to_string()));
        }
        if let Some(c) = &self.cidr_error {
            return Err(PolicyError::InvalidCidr(c.clone()));
        }
        if let ScopeRequirement::AllOf(s) | ScopeRequirement::AnyOf(s) = &self.scopes {
            for scope in s {
                validate_scope(scope)?;
            }
        }
        Ok(())
    }
}

/// `str::split('/')` for a request path, without its memchr set-up (paths are short and this
/// runs on every request).
struct PathParts<'a>(Option<&'a str>);

impl<'a> Iterator for PathParts<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let s = self.0?;
        match s.bytes().position(|b| b == b'/') {
            Some(i) => {
                self.0 = s.get(i + 1..);
                s.get(..i)
            }
            None => {
                self.0 = None;
                Some(s)
            }
        }
    }
}

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
pub fn validate_scope(scope: &str) -> Result<(), PolicyError> {
    let ok = !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(PolicyError::InvalidScope(scope.to_owned()))
    }
}

/// A validated verification policy. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) issuers: Vec<String>,
    pub(crate) audience: String,
    pub(crate) also_audiences: Vec<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) max_lifetime: u64,
    pub(crate) leeway: u64,
    pub(crate) require_at_jwt: bool,
    pub(crate) max_token_bytes: usize,
    pub(crate) routes: Vec<RouteRule>,
    pub(crate) default_route: Option<RouteRule>,
    pub(crate) realm: Option<String>,
    pub(crate) client_cidrs: Vec<(String, Vec<Cidr>)>,
    /// Whether any rule limits source addresses: without one, a request's address is never
    /// looked up.
    pub(crate) source_rules: bool,
}

impl Policy {
    /// Starts a builder with zsp's defaults.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }
    /// The trusted issuers.
    pub fn issuers(&self) -> &[String] {
        &self.issuers
    }
    /// This service's audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }
    /// Whether `aud` names this service (its audience or an alias).
    pub fn accepts_audience(&self, aud: &crate::claims::Audience) -> bool {
        aud.iter().any(|a| self.accepts_audience_str(a))
    }
    /// Whether one `aud` value names this policy's audience or one it also accepts.
    pub fn accepts_audience_str(&self, aud: &str) -> bool {
        self.audience == aud || self.also_audiences.iter().any(|a| a == aud)
    }
    /// The allowed algorithms.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }
    /// The maximum `exp − iat`, in seconds.
    pub fn max_lifetime_secs(&self) -> u64 {
        self.max_lifetime
    }
    /// The leeway, in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway
    }
    /// The maximum token size in bytes.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }
    /// The realm sent in challenges, if any.
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }
    /// Whether any route or client is limited to source networks: only then does a request's
    /// client address ([`crate::RequestFacts::client_ip`]) take part in a decision.
    ///
    /// ```
    /// use zsp_core::{Policy, RouteRule};
    /// # fn main() -> Result<(), zsp_core::PolicyError> {
    /// let open = Policy::builder().issuer("https://broker").audience("api")
    ///     .route(RouteRule::get("/a").all_of(["a:read"])).build()?;
    /// assert!(!open.uses_source_addresses());
    /// let fenced = Policy::builder().issuer("https://broker").audience("api")
    ///     .route(RouteRule::get("/a").all_of(["a:read"]).from_cidrs(["10.0.0.0/8"]))
    ///     .build()?;
    /// assert!(fenced.uses_source_addresses());
    /// # Ok(())
    /// # }
    /// ```
    pub fn uses_source_addresses(&self) -> bool {
        self.source_rules
    }
    /// The source networks a client (by `client_id`) is limited to, if any.
    pub fn client_cidrs(&self, client_id: &str) -> Option<&[Cidr]> {
        self.client_cidrs
            .iter()
            .find(|(c, _)| c == client_id)
            .map(|(_, cidrs)| cidrs.as_slice())
    }
    /// The first rule matching the request, or the default rule.
    pub fn route_for(&self, method: &Method, path: &str) -> Option<&RouteRule> {
        self.routes
            .iter()
            .find(|r| r.matches(method, path))
            .or(self.default_route.as_ref())
    }
    /// The first RSA-family algorithm the policy allows: how RSA JWKs without `alg` are pinned.
    pub fn rsa_default(&self) -> Option<Algorithm> {
        self.algorithms.iter().copied().find(|a| crate::keys::is_rsa(*a))
    }
}

/// Builds a [`Policy`]; validation happens in [`PolicyBuilder::build`].
///
/// ```
/// use std::time::Duration;
/// use zsp_core::{Policy, RouteRule};
/// let policy = Policy::builder()
///     .issuer("https://broker.internal")
///     .audience("orders-api")
///     .max_lifetime(Duration::from_secs(120))
///     .route(RouteRule::get("/orders/{id}").all_of(["orders:read"]))
///     .route(RouteRule::post("/orders").all_of(["orders:write"]).single_use())
///     .build()
///     .unwrap();
/// assert_eq!(policy.max_lifetime_secs(), 120);
/// ```
#[derive(Debug, Clone)]
pub struct PolicyBuilder {
    issuers: Vec<String>,
    audience: Option<String>,
    also_audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    max_lifetime: Duration,
    leeway: Duration,
    require_at_jwt: bool,
    max_token_bytes: usize,
    routes: Vec<RouteRule>,
    default_route: Option<RouteRule>,
    realm: Option<String>,
    client_cidrs: Vec<(String, Result<Vec<Cidr>, String>)>,
}

impl Default for PolicyBuilder {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            audience: None,
            also_audiences: Vec::new(),
            algorithms: vec![Algorithm::ES256, Algorithm::EdDSA],
            max_lifetime: DEFAULT_MAX_LIFETIME,
            leeway: DEFAULT_LEEWAY,
            require_at_jwt: false,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            routes: Vec::new(),
            default_route: None,
            realm: None,
            client_cidrs: Vec::new(),
        }
    }
}

impl PolicyBuilder {
    /// Adds a trusted issuer (exact `iss` match).
    pub fn issuer(mut self, iss: impl Into<String>) -> Self {
        self.issuers.push(iss.into());
        self
    }
    /// Sets this service's audience (`aud` must name it).
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audience = Some(aud.into());
        self
    }
    /// Another name this service answers to (e.g. its URL besides its logical name).
    pub fn also_audience(mut self, aud: impl Into<String>) -> Self {
        self.also_audiences.push(aud.into());
        self
    }
    /// Replaces the allowed algorithms (default ES256 and EdDSA).
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algs.into_iter().collect();
        self
    }
    /// Caps `exp − iat` (default 300 s).
    pub fn max_lifetime(mut self, d: Duration) -> Self {
        self.max_lifetime = d;
        self
    }
    /// Clock-skew allowance (default 10 s, at most [`MAX_CONFIGURABLE_LEEWAY`]).
    pub fn leeway(mut self, d: Duration) -> Self {
        self.leeway = d;
        self
    }
    /// Requires header `typ` `at+jwt` (RFC 9068 §2.1); otherwise `at+jwt`,
    /// `application/at+jwt`, `JWT` or no `typ` are accepted.
    pub fn require_at_jwt(mut self, on: bool) -> Self {
        self.require_at_jwt = on;
        self
    }
    /// Maximum token size in bytes (default 8 KiB).
    pub fn max_token_bytes(mut self, n: usize) -> Self {
        self.max_token_bytes = n;
        self
    }
    /// Appends a route rule; the first matching rule wins.
    pub fn route(mut self, rule: RouteRule) -> Self {
        self.routes.push(rule);
        self
    }
    /// The rule for requests no route matches (without one they are denied).
    pub fn default_route(mut self, rule: RouteRule) -> Self {
        self.default_route = Some(rule);
        self
    }
    /// The realm sent in `WWW-Authenticate` challenges.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Limits tokens issued to `client_id` (their `client_id` claim) to source addresses
    /// inside one of `cidrs`, on every route.
    pub fn client_from_cidrs<I: IntoIterator<Item = S>, S: AsRef<str>>(
        mut self,
        client_id: impl Into<String>,
        cidrs: I,
    ) -> Self {
        let parsed = cidrs
            .into_iter()
            .map(|c| c.as_ref().parse::<Cidr>().map_err(|_| c.as_ref().to_owned()))
            .collect();
        self.client_cidrs.push((client_id.into(), parsed));
        self
    }

    /// Validates and builds the policy.
    pub fn build(self) -> Result<Policy, PolicyError> {
        let mut client_cidrs = Vec::with_capacity(self.client_cidrs.len());
        for (client, cidrs) in self.client_cidrs {
            client_cidrs.push((client, cidrs.map_err(PolicyError::InvalidCidr)?));
        }
        if self.issuers.is_empty() || self.issuers.iter().any(String::is_empty) {
            return Err(PolicyError::MissingIssuer);
        }
        let audience = self
            .audience
            .filter(|a| !a.is_empty())
            .ok_or(PolicyError::MissingAudience)?;
        if self.algorithms.is_empty() {
            return Err(PolicyError::NoAlgorithms);
        }
        if self.max_lifetime.as_secs() == 0 || self.max_lifetime > MAX_CONFIGURABLE_LIFETIME {
            return Err(PolicyError::InvalidLifetime);
        }
        if self.leeway > MAX_CONFIGURABLE_LEEWAY {
            return Err(PolicyError::InvalidLeeway);
        }
        if !(256..=65536).contains(&self.max_token_bytes) {
            return Err(PolicyError::InvalidTokenSize);
        }
        for r in self.routes.iter().chain(self.default_route.iter()) {
            r.validate()?;
        }
        let source_rules = !client_cidrs.is_empty()
            || self
                .routes
                .iter()
                .chain(self.default_route.iter())
                .any(|r| !r.source_cidrs().is_empty());
        Ok(Policy {
            issuers: self.issuers,
            audience,
            also_audiences: self.also_audiences,
            algorithms: self.algorithms,
            max_lifetime: self.max_lifetime.as_secs(),
            leeway: self.leeway.as_secs(),
            require_at_jwt: self.require_at_jwt,
            max_token_bytes: self.max_token_bytes,
            routes: self.routes,
            default_route: self.default_route,
            realm: self.realm,
            client_cidrs,
            source_rules,
        })
    }
}

/// The serde form of a [`Policy`], for policy files.
///
/// ```
/// let toml_or_json = r#"{
///   "issuers": ["https://broker.internal"],
///   "audience": "orders-api",
///   "routes": [
///     {"method": "GET", "path": "/orders/{id}", "all_of": ["orders:read"]},
///     {"method": "POST", "path": "/orders", "all_of": ["orders:write"], "single_use": true}
///   ]
/// }"#;
/// let cfg: zsp_core::PolicyConfig = serde_json::from_str(toml_or_json).unwrap();
/// let policy = cfg.build().unwrap();
/// assert_eq!(policy.leeway_secs(), 10);
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Trusted issuers.
    pub issuers: Vec<String>,
    /// This service's audience.
    pub audience: String,
    /// Allowed algorithms (default `["ES256", "EdDSA"]`).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Maximum `exp − iat` in seconds (default 300).
    #[serde(default)]
    pub max_lifetime_secs: Option<u64>,
    /// Leeway in seconds (default 10).
    #[serde(default)]
    pub leeway_secs: Option<u64>,
    /// `"at+jwt"` to require RFC 9068 typed tokens.
    #[serde(default)]
    pub require_typ: Option<String>,
    /// Maximum token size in bytes (default 8192).
    #[serde(default)]
    pub max_token_bytes: Option<usize>,
    /// Realm for challenges.
    #[serde(default)]
    pub realm: Option<String>,
    /// Route rules, first match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Rule for unmatched requests; absent means they are denied.
    #[serde(default)]
    pub default_route: Option<RouteConfig>,
    /// Source networks per client (`client_id` claim), checked on every route.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub client_cidrs: std::collections::BTreeMap<String, Vec<String>>,
}

/// The serde form of a [`RouteRule`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// HTTP method; absent or `"*"` for any.
    #[serde(default)]
    pub method: Option<String>,
    /// Path template (`/orders/{id}`, `/files/{*rest}`).
    pub path: String,
    /// Every one of these scopes is required.
    #[serde(default)]
    pub all_of: Vec<String>,
    /// At least one of these scopes is required.
    #[serde(default)]
    pub any_of: Vec<String>,
    /// Tokens are single-use on this route.
    #[serde(default)]
    pub single_use: bool,
    /// Only DPoP-bound tokens.
    #[serde(default)]
    pub sender_constrained: bool,
    /// Source networks allowed to call the route.
    #[serde(default)]
    pub source_cidrs: Vec<String>,
}

impl RouteConfig {
    fn to_rule(&self) -> Result<RouteRule, PolicyError> {
        let method = match self.method.as_deref() {
            None | Some("*") => None,
            Some(m) => Some(
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| PolicyError::InvalidMethod(m.to_owned()))?,
            ),
        };
        let mut rule = RouteRule::new(method, &self.path);
        if !self.all_of.is_empty() && !self.any_of.is_empty() {
            return Err(PolicyError::InvalidScope("both all_of and any_of".into()));
        }
        if !self.all_of.is_empty() {
            rule = rule.all_of(self.all_of.iter().cloned());
        }
        if !self.any_of.is_empty() {
            rule = rule.any_of(self.any_of.iter().cloned());
        }
        rule.single_use = self.single_use;
        rule.sender_constrained = self.sender_constrained;
        Ok(rule.from_cidrs(&self.source_cidrs))
    }
}

impl PolicyConfig {
    /// Validates and builds the policy.
    pub fn build(&self) -> Result<Policy, PolicyError> {
        let mut b = Policy::builder().audience(self.audience.clone());
        for i in &self.issuers {
            b = b.issuer(i.clone());
        }
        if let Some(algs) = &self.algorithms {
            let parsed = algs
                .iter()
                .map(|a| crate::keys::parse_alg(a).ok_or_else(|| PolicyError::UnknownAlgorithm(a.clone())))
                .collect::<Result<Vec<_>, _>>()?;
            b = b.algorithms(parsed);
        }
        if let Some(s) = self.max_lifetime_secs {
            b = b.max_lifetime(Duration::from_secs(s));
        }
        if let Some(s) = self.leeway_secs {
            b = b.leeway(Duration::from_secs(s));
        }
        match self.require_typ.as_deref() {
            None => {}
            Some(t) if t.eq_ignore_ascii_case("at+jwt") => b = b.require_at_jwt(true),
            Some(_) => return Err(PolicyError::InvalidTyp),
        }
        if let Some(n) = self.max_token_bytes {
            b = b.max_token_bytes(n);
        }
        if let Some(r) = &self.realm {
            b = b.realm(r.clone());
        }
        for r in &self.routes {
            b = b.route(r.to_rule()?);
        }
        if let Some(r) = &self.default_route {
            b = b.default_route(r.to_rule()?);
        }
        for (client, cidrs) in &self.client_cidrs {
            b = b.client_from_cidrs(client.clone(), cidrs);
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn path_parts_split_like_str_split(path in "[/a-z\u{e9}]{0,12}") {
            let ours: Vec<&str> = PathParts(Some(&path)).collect();
            let std: Vec<&str> = path.split('/').collect();
            proptest::prop_assert_eq!(ours, std);
        }
    }

    fn base() -> PolicyBuilder {
        Policy::builder().issuer("i").audience("a")
    }

    /// Leeway extends every token past `exp`; `exp + u64::MAX` saturates, so an unbounded
    /// leeway from a policy file would accept expired tokens forever. Found while writing the
    /// policy fuzz target (HARDENING.md), whose harness now asserts the bound.
    #[test]
    fn unbounded_leeway_is_refused() {
        assert_eq!(
            base().leeway(Duration::from_secs(u64::MAX)).build().unwrap_err(),
            PolicyError::InvalidLeeway
        );
        assert_eq!(
            base()
                .leeway(MAX_CONFIGURABLE_LEEWAY + Duration::from_secs(1))
                .build()
                .unwrap_err(),
            PolicyError::InvalidLeeway
        );
        assert!(base().leeway(MAX_CONFIGURABLE_LEEWAY).build().is_ok());
        let cfg: PolicyConfig = serde_json::from_str(
            r#"{"issuers": ["i"], "audience": "a", "leeway_secs": 18446744073709551615}"#,
        )
        .unwrap();
        assert_eq!(cfg.build().unwrap_err(), PolicyError::InvalidLeeway);
    }

    #[test]
    fn builder_validates() {
        assert_eq!(
            Policy::builder().audience("a").build().unwrap_err(),
            PolicyError::MissingIssuer
        );
        assert_eq!(
            Policy::builder().issuer("i").build().unwrap_err(),
            PolicyError::MissingAudience
        );
        assert_eq!(
            base().algorithms([]).build().unwrap_err(),
            PolicyError::NoAlgorithms
        );
        assert_eq!(
            base().max_lifetime(Duration::ZERO).build().unwrap_err(),
            PolicyError::InvalidLifetime
        );
        assert!(matches!(
            base().route(RouteRule::get("orders")).build(),
            Err(PolicyError::InvalidTemplate(_))
        ));
        assert!(matches!(
            base()
                .route(RouteRule::get("/x").from_cidrs(["10.0.0.0/33"]))
                .build(),
            Err(PolicyError::InvalidCidr(_))
        ));
        assert!(matches!(
            base().route(RouteRule::get("/x").all_of(["a\"b"])).build(),
            Err(PolicyError::InvalidScope(_))
        ));
    }

    #[test]
    fn templates_match_like_axum() {
        let r = RouteRule::get("/orders/{id}");
        assert!(r.matches(&Method::GET, "/orders/42"));
        assert!(r.matches(&Method::HEAD, "/orders/42"));
        assert!(!r.matches(&Method::GET, "/orders/"));
        assert!(!r.matches(&Method::GET, "/orders/42/x"));
        assert!(!r.matches(&Method::GET, "/orders"));
        let r = RouteRule::any("/files/{*rest}");
        assert!(r.matches(&Method::PUT, "/files/a/b/c"));
        assert!(!r.matches(&Method::PUT, "/other"));
    }

    #[test]
    fn first_match_wins_and_default_applies() {
        let p = base()
            .route(RouteRule::get("/a").all_of(["x"]))
            .route(RouteRule::any("/a").all_of(["y"]))
            .default_route(RouteRule::any("/{*all}"))
            .build()
            .unwrap();
        assert_eq!(
            p.route_for(&Method::GET, "/a").unwrap().scopes(),
            &ScopeRequirement::AllOf(vec!["x".into()])
        );
        assert_eq!(
            p.route_for(&Method::POST, "/a").unwrap().scopes(),
            &ScopeRequirement::AllOf(vec!["y".into()])
        );
        assert_eq!(p.route_for(&Method::POST, "/zzz").unwrap().template(), "/{*all}");
        let strict = base().route(RouteRule::get("/a")).build().unwrap();
        assert!(strict.route_for(&Method::GET, "/b").is_none());
    }

    #[test]
    fn client_cidrs_validated_and_found() {
        assert!(matches!(
            base().client_from_cidrs("svc", ["10.0.0.0/99"]).build(),
            Err(PolicyError::InvalidCidr(_))
        ));
        let p = base().client_from_cidrs("svc", ["10.0.0.0/8"]).build().unwrap();
        assert_eq!(p.client_cidrs("svc").unwrap().len(), 1);
        assert!(p.client_cidrs("other").is_none());
        let cfg: PolicyConfig =
            serde_json::from_str(r#"{"issuers":["i"],"audience":"a","client_cidrs":{"svc":["10.0.0.0/8"]}}"#)
                .unwrap();
        assert!(cfg.build().unwrap().client_cidrs("svc").is_some());
    }

    #[test]
    fn source_rules_are_known_to_the_policy() {
        assert!(!base().build().unwrap().uses_source_addresses());
        assert!(
            base()
                .client_from_cidrs("svc", ["10.0.0.0/8"])
                .build()
                .unwrap()
                .uses_source_addresses()
        );
        // A client allowed from nowhere is still a source rule (every request of it is denied).
        let none: [&str; 0] = [];
        assert!(
            base()
                .client_from_cidrs("svc", none)
                .build()
                .unwrap()
                .uses_source_addresses()
        );
        let fenced_default = base().default_route(RouteRule::any("/{*rest}").from_cidrs(["::1/128"]));
        assert!(fenced_default.build().unwrap().uses_source_addresses());
        let open_default = base().default_route(RouteRule::any("/{*rest}"));
        assert!(!open_default.build().unwrap().uses_source_addresses());
    }

    #[test]
    fn cidr_contains() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
    }

    #[test]
    fn config_round_trip() {
        let cfg: PolicyConfig = serde_json::from_str(
            r#"{"issuers":["i"],"audience":"a","algorithms":["ES256","RS256"],"require_typ":"at+jwt",
                "routes":[{"method":"post","path":"/o","all_of":["w"],"single_use":true}]}"#,
        )
        .unwrap();
        let p = cfg.build().unwrap();
        assert!(p.route_for(&Method::POST, "/o").unwrap().is_single_use());
        assert_eq!(p.rsa_default(), Some(Algorithm::RS256));
        let bad: PolicyConfig =
            serde_json::from_str(r#"{"issuers":["i"],"audience":"a","algorithms":["none"]}"#).unwrap();
        assert_eq!(
            bad.build().unwrap_err(),
            PolicyError::UnknownAlgorithm("none".into())
        );
    }
}
