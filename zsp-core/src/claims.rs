//! The claims of an ephemeral access token (RFC 7519, RFC 9068, RFC 8693, RFC 7800): data only.

use serde::{Deserialize, Deserializer, Serialize};

use crate::clock::UnixTime;

/// The registered and zsp-relevant claims of an access token.
///
/// Custom claims are not parsed here; [`crate::Grant::claims`] deserialises them on demand
/// from the verified payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Subject: the workload (or user) the token speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audience: one string or an array (RFC 7519 §4.1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<UnixTime>,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<UnixTime>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<UnixTime>,
    /// Token id, the key of single use and revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The OAuth client the token was issued to (RFC 9068 §2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Granted scopes, space-delimited (RFC 9068 §2.2.3, RFC 8693 §4.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Granted scopes as an array, as some issuers (Azure AD, Okta) send them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<ScpClaim>,
    /// Confirmation: the key the token is bound to (RFC 7800, RFC 9449 §6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The acting party in a delegation chain (RFC 8693 §4.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// Set by an issuer whose policy makes the client's tokens single-use: every verifier
    /// then records the `jti`, whatever its route rules say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_use: Option<bool>,
}

impl Claims {
    /// The granted scopes from `scope` and `scp`, merged.
    pub fn scopes(&self) -> ScopeSet {
        let mut set = ScopeSet::default();
        if let Some(scope) = &self.scope {
            set.extend(scope.split(' ').filter(|s| !s.is_empty()));
        }
        match &self.scp {
            Some(ScpClaim::List(list)) => set.extend(list.iter().map(String::as_str)),
            Some(ScpClaim::Space(s)) => set.extend(s.split(' ').filter(|s| !s.is_empty())),
            None => {}
        }
        set
    }
}

/// The `scp` claim: an array of scopes, or (rarely) a space-delimited string.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ScpClaim {
    /// `["a", "b"]`
    List(Vec<String>),
    /// `"a b"`
    Space(String),
}

/// The `aud` claim.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences; the token is valid for each.
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Untagged derive would buffer the value; a visitor reads it once.
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Audience;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience::One(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Audience, E> {
                Ok(Audience::One(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Audience, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = a.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Audience::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Audience {
    /// Whether `aud` names `audience`.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(list) => list.iter().any(|a| a == audience),
        }
    }
    /// The audiences as a slice-like iterator.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many): (Option<&String>, &[String]) = match self {
            Audience::One(a) => (Some(a), &[]),
            Audience::Many(list) => (None, list.as_slice()),
        };
        one.into_iter().chain(many).map(String::as_str)
    }
}

/// The `cnf` claim (RFC 7800); zsp uses the JWK SHA-256 thumbprint of RFC 9449 §6.1.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    /// base64url SHA-256 JWK thumbprint (RFC 7638) of the key the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
}

/// The `act` claim (RFC 8693 §4.1): who is acting on behalf of the subject, possibly nested.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    /// The actor's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The actor's client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The previous actor in the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

/// A set of scope tokens, kept sorted and deduplicated.
///
/// ```
/// use zsp_core::ScopeSet;
/// let s: ScopeSet = "orders:read orders:write".parse().unwrap();
/// assert!(s.contains("orders:read"));
/// assert_eq!(s.to_string(), "orders:read orders:write");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub struct ScopeSet(Vec<String>);

impl ScopeSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.binary_search_by(|s| s.as_str().cmp(scope)).is_ok()
    }
    /// Adds one scope.
    pub fn insert(&mut self, scope: &str) {
        if let Err(i) = self.0.binary_search_by(|s| s.as_str().cmp(scope)) {
            self.0.insert(i, scope.to_owned());
        }
    }
    /// Whether every scope of `self` is in `other`.
    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.iter().all(|s| other.contains(s))
    }
    /// Iterates in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> Extend<&'a str> for ScopeSet {
    fn extend<I: IntoIterator<Item = &'a str>>(&mut self, iter: I) {
        for s in iter {
            self.insert(s);
        }
    }
}

impl<'a> FromIterator<&'a str> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        let mut set = ScopeSet::new();
        set.extend(iter);
        set
    }
}

impl std::str::FromStr for ScopeSet {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(s.split(' ').filter(|s| !s.is_empty()).collect())
    }
}

impl From<String> for ScopeSet {
    fn from(s: String) -> Self {
        s.split(' ').filter(|s| !s.is_empty()).collect()
    }
}

impl From<ScopeSet> for String {
    fn from(s: ScopeSet) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aud_string_or_array() {
        let c: Claims = serde_json::from_str(r#"{"aud":"a"}"#).unwrap();
        assert!(c.aud.unwrap().contains("a"));
        let c: Claims = serde_json::from_str(r#"{"aud":["b","a"]}"#).unwrap();
        assert!(c.aud.unwrap().contains("a"));
        assert!(serde_json::from_str::<Claims>(r#"{"aud":5}"#).is_err());
    }

    #[test]
    fn scope_and_scp_merge() {
        let c: Claims = serde_json::from_str(r#"{"scope":"a  b","scp":["c","a"]}"#).unwrap();
        let s = c.scopes();
        assert_eq!(s.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}
