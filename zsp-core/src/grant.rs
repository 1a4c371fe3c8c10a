//! What a verified request is allowed to do: the handler's view of the token.

use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;

use crate::claims::{Actor, Audience, Claims, Confirmation, ScopeSet};
use crate::claims_view::{Checked, ScpRef, Text};
use crate::clock::UnixTime;

/// What the verifier read from the payload and a handler needs on every request: kept as
/// ranges of the payload, so building a grant copies no strings. Everything else is parsed
/// from the payload on first use.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    pub iss: Text,
    pub sub: Text,
    pub client_id: Text,
    pub jti: Text,
    pub scope: Text,
    pub jkt: Text,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub nbf: Option<UnixTime>,
    pub single_use: bool,
    pub has_scp: bool,
}

impl Fields {
    pub(crate) fn of(payload: &str, c: &Checked<'_>) -> Fields {
        let has_scp = c.scp != ScpRef::None;
        Fields {
            iss: Text::of(payload, c.iss),
            sub: Text::of(payload, c.sub),
            client_id: Text::of(payload, c.client_id),
            jti: Text::of(payload, c.jti),
            scope: Text::of(payload, c.scope),
            jkt: Text::of(payload, c.jkt),
            exp: c.exp.unwrap_or_default(),
            iat: c.iat.unwrap_or_default(),
            nbf: c.nbf,
            single_use: c.single_use == Some(true),
            has_scp,
        }
    }
}

fn is_canonical(scope: &str) -> bool {
    let mut prev: Option<&[u8]> = None;
    // Split as bytes: for a few dozen bytes a plain loop beats `str::split`'s memchr set-up.
    scope.as_bytes().split(|&b| b == b' ').all(|s| {
        let ok = !s.is_empty() && prev.is_none_or(|p| p < s);
        prev = Some(s);
        ok
    })
}

/// A verified token: the token, its payload and what was read from it. Shared by every
/// grant made from the same token (the signature cache hands it out again on a hit).
pub(crate) struct Parsed {
    token: Box<str>,
    payload: String,
    pub fields: Fields,
    claims: OnceLock<Claims>,
    scopes: OnceLock<ScopeSet>,
    /// The audit form of the scopes when the token's own text is not it (`Some`), worked out
    /// once per token: a cached token is audited on every request.
    audit_scopes: OnceLock<Option<Box<str>>>,
    /// The token's fields of a JSON audit line, escaped once per token, and where the scopes
    /// start in them ([`crate::audit_log::token_fields_json`]).
    audit_json: OnceLock<(Box<[u8]>, usize)>,
}

impl Parsed {
    // Two allocations, not one buffer for both: one buffer would have to be checked as UTF-8
    // whole, the token included, which costs more than the second allocation saves.
    pub(crate) fn new(token: &str, payload: String, fields: Fields) -> Self {
        Parsed {
            token: token.into(),
            payload,
            fields,
            claims: OnceLock::new(),
            scopes: OnceLock::new(),
            audit_scopes: OnceLock::new(),
            audit_json: OnceLock::new(),
        }
    }

    /// The compact JWS as presented.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// The decoded payload (JSON text).
    pub(crate) fn payload(&self) -> &str {
        &self.payload
    }

    pub(crate) fn text<'a>(&'a self, t: &'a Text) -> Option<&'a str> {
        t.get(self.payload())
    }

    pub(crate) fn registered(&self) -> &Claims {
        self.claims.get_or_init(|| {
            // The verifier parsed these very bytes with the same parser before granting, and
            // parsing is deterministic: the fallback is unreachable (and would grant nothing).
            crate::claims_view::claims_of(self.payload()).unwrap_or_default()
        })
    }

    pub(crate) fn scopes(&self) -> &ScopeSet {
        self.scopes.get_or_init(|| self.registered().scopes())
    }

    /// The scopes in their display form (`scope` and `scp` merged, sorted, space-separated),
    /// without building a [`ScopeSet`] when the token already carries them that way.
    pub(crate) fn scope_text(&self) -> &str {
        let own = self.text(&self.fields.scope);
        let other = self.audit_scopes.get_or_init(|| match own {
            // Scopes only from a `scope` already in canonical form (sorted, unique, single
            // spaces): that text is the ScopeSet's display form as it stands. Checked on the
            // audit path rather than for every token, and once per token.
            Some(s) if !self.fields.has_scp && is_canonical(s) => None,
            _ => Some(self.scopes().to_string().into()),
        });
        match (other, own) {
            (Some(s), _) => s,
            (None, Some(s)) => s,
            (None, None) => "",
        }
    }

    /// The token's fields of its audit events.
    pub(crate) fn audit_ids(&self) -> crate::audit::AuditIds<'_> {
        let f = &self.fields;
        crate::audit::AuditIds {
            iss: self.text(&f.iss),
            sub: self.text(&f.sub),
            client_id: self.text(&f.client_id),
            jti: self.text(&f.jti),
            scopes: Some(self.scope_text()),
        }
    }

    /// The token's fields of a JSON audit line, escaped, as two pieces: `iss` to `jti` (the
    /// line puts `method` and `route` next), then `scopes`.
    pub(crate) fn audit_json(&self) -> (&[u8], &[u8]) {
        let (json, scopes_at) = self
            .audit_json
            .get_or_init(|| crate::audit_log::token_fields_json(self));
        json.split_at_checked(*scopes_at).unwrap_or((json, &[]))
    }

    /// Whether the token grants `scope`; reads the `scope` text in place unless `scp` is
    /// there too.
    pub(crate) fn has_scope(&self, scope: &str) -> bool {
        if self.fields.has_scp {
            return self.scopes().contains(scope);
        }
        self.text(&self.fields.scope)
            .is_some_and(|t| has_item(t.as_bytes(), scope.as_bytes()))
    }
}

/// Whether `item` is one of the pieces of `list` split at every space (a `scope` claim,
/// RFC 6749 §3.3): `list.split(|&b| b == b' ').any(|s| s == item)`, with the spaces found by
/// memchr rather than a byte at a time. It runs on every request.
fn has_item(list: &[u8], item: &[u8]) -> bool {
    let mut rest = list;
    while let Some(i) = memchr::memchr(b' ', rest) {
        let (piece, after) = rest.split_at(i);
        if piece == item {
            return true;
        }
        rest = after.get(1..).unwrap_or_default();
    }
    rest == item
}

/// A verified token, placed in request extensions by the inbound layer. Cheap to clone.
///
/// `Debug` never prints the token itself.
#[derive(Clone)]
pub struct Grant {
    parsed: Arc<Parsed>,
    route: Option<Arc<str>>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("iss", &self.issuer())
            .field("sub", &self.subject())
            .field("client_id", &self.client_id())
            .field("jti", &self.jti())
            .field("scopes", self.scopes())
            .field("exp", &self.expires_at())
            .finish_non_exhaustive()
    }
}

impl Grant {
    pub(crate) fn new(parsed: Arc<Parsed>, route: Option<Arc<str>>) -> Self {
        Grant { parsed, route }
    }

    pub(crate) fn parsed(&self) -> &Parsed {
        &self.parsed
    }

    /// The registered claims (parsed from the verified payload on first use).
    pub fn registered(&self) -> &Claims {
        self.parsed.registered()
    }
    /// Issuer.
    pub fn issuer(&self) -> &str {
        let p = self.parsed();
        p.text(&p.fields.iss).unwrap_or_default()
    }
    /// Subject, if the token has one.
    pub fn subject(&self) -> Option<&str> {
        let p = self.parsed();
        p.text(&p.fields.sub)
    }
    /// Client id, if the token has one.
    pub fn client_id(&self) -> Option<&str> {
        let p = self.parsed();
        p.text(&p.fields.client_id)
    }
    /// Granted scopes (`scope` and `scp` merged).
    pub fn scopes(&self) -> &ScopeSet {
        self.parsed.scopes()
    }
    /// Audience.
    pub fn audience(&self) -> Option<&Audience> {
        self.registered().aud.as_ref()
    }
    /// Expiry (unix seconds).
    pub fn expires_at(&self) -> UnixTime {
        self.parsed().fields.exp
    }
    /// Issued at (unix seconds).
    pub fn issued_at(&self) -> UnixTime {
        self.parsed().fields.iat
    }
    /// Token id.
    pub fn jti(&self) -> Option<&str> {
        let p = self.parsed();
        p.text(&p.fields.jti)
    }
    /// Confirmation (the key a sender-constrained token is bound to).
    pub fn cnf(&self) -> Option<&Confirmation> {
        self.registered().cnf.as_ref()
    }
    /// The JWK thumbprint the token is bound to (`cnf.jkt`, RFC 9449 §6.1), if any.
    pub fn jkt(&self) -> Option<&str> {
        let p = self.parsed();
        p.text(&p.fields.jkt)
    }
    /// The delegation chain (RFC 8693 `act`).
    pub fn act(&self) -> Option<&Actor> {
        self.registered().act.as_ref()
    }
    /// The route template the request matched.
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
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
        serde_json::from_str(self.parsed.payload())
    }
    /// One claim by name, typed; `None` if absent or of another type.
    pub fn claim<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(self.parsed.payload()).ok()?;
        map.get(name).and_then(|v| T::deserialize(v).ok())
    }
    /// The access token itself, for token exchange (RFC 8693 `subject_token`). It is a
    /// credential: never log it.
    pub fn token(&self) -> &str {
        self.parsed.token()
    }
    /// A short, non-reversible fingerprint of the token for logs (first 8 bytes of its SHA-256,
    /// hex).
    pub fn fingerprint(&self) -> String {
        let h = crate::crypto::sha256(self.parsed.token().as_bytes());
        h[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims_view::ClaimsView;

    fn parsed(payload: &str) -> Parsed {
        let view: ClaimsView<'_> = serde_json::from_str(payload).unwrap();
        let fields = Fields::of(payload, &view.checked());
        Parsed::new("t", payload.to_owned(), fields)
    }

    #[test]
    fn has_item_is_split_at_spaces_then_compared() {
        for (list, item, expected) in [
            ("orders:list orders:read", "orders:read", true),
            ("orders:list orders:read", "orders:list", true),
            ("orders:list orders:read", "orders", false),
            ("orders:list orders:read", "orders:list orders:read", false),
            ("orders:list orders:read", "rders:read", false),
            ("a", "a", true),
            ("", "", true),
            ("a  b", "", true),
            (" a", "a", true),
            ("a ", "", true),
            ("ab", "a", false),
            ("a very long list of scopes well past eight bytes", "eight", true),
            ("a very long list of scopes well past eight bytes", "byte", false),
            ("é ü", "ü", true),
        ] {
            assert_eq!(
                has_item(list.as_bytes(), item.as_bytes()),
                expected,
                "{list:?} {item:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn has_item_agrees_with_split(
            list in "[ ab\u{e9}\u{80}\u{ff}]{0,40}",
            item in "[ ab\u{e9}]{0,4}",
        ) {
            let expected = list.as_bytes().split(|&b| b == b' ').any(|s| s == item.as_bytes());
            proptest::prop_assert_eq!(has_item(list.as_bytes(), item.as_bytes()), expected);
        }
    }

    proptest::proptest! {
        /// The token's fields escaped once per token make the very line that escaping them
        /// for each event makes, whatever the claims hold.
        #[test]
        fn audit_json_writes_the_line_the_event_writes(
            iss in proptest::option::of("\\PC{0,12}|[ -~\"\\\\\\x00-\\x1f\\x7f]{0,12}"),
            sub in proptest::option::of("\\PC{0,12}|[ -~\"\\\\\\x00-\\x1f\\x7f]{0,12}"),
            client_id in proptest::option::of("[a-z\"\\\\\\n]{0,12}"),
            jti in proptest::option::of("[ -~]{0,40}"),
            scope in proptest::option::of("[ab \"\\\\é]{0,16}"),
            scp in proptest::option::of(proptest::collection::vec("[a-c\"]{1,3}", 0..3)),
        ) {
            use crate::audit::AuditDecision;
            let mut claims = serde_json::Map::new();
            for (k, v) in [("iss", &iss), ("sub", &sub), ("client_id", &client_id), ("jti", &jti), ("scope", &scope)] {
                if let Some(v) = v {
                    claims.insert(k.into(), v.clone().into());
                }
            }
            if let Some(scp) = &scp {
                claims.insert("scp".into(), scp.clone().into());
            }
            let payload = serde_json::Value::Object(claims).to_string();
            let p = parsed(&payload);
            let event = p.audit_ids().event(AuditDecision::Allow, "ok", "GET", Some("/orders/{id}"), 7);
            proptest::prop_assert_eq!(event.sub, sub.as_deref());
            let mut plain = Vec::new();
            event.write_json_line(&mut plain, 1_700_000_000_123);
            // Twice: escaped on the first call, copied on the second.
            for _ in 0..2 {
                let mut memo = Vec::new();
                event.write_json_line_with(&mut memo, 1_700_000_000_123, Some(p.audit_json()));
                proptest::prop_assert_eq!(&memo, &plain);
            }
        }
    }

    #[test]
    fn audit_scopes_are_the_canonical_form_every_time() {
        for (payload, expected) in [
            (r#"{"scope":"a b"}"#, "a b"),
            (r#"{"scope":"b  a a"}"#, "a b"),
            (r#"{"scp":["b","a"]}"#, "a b"),
            (r#"{"scope":"a","scp":["c"]}"#, "a c"),
            (r#"{}"#, ""),
        ] {
            let p = parsed(payload);
            assert_eq!(p.scope_text(), expected, "{payload}");
            assert_eq!(p.scope_text(), expected, "{payload}, again");
        }
        // The canonical text is the payload's own bytes, not a copy.
        let p = parsed(r#"{"scope":"a b"}"#);
        assert!(
            p.payload()
                .as_bytes()
                .as_ptr_range()
                .contains(&p.scope_text().as_ptr())
        );
    }
}
