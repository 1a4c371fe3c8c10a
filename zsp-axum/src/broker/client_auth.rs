//! Client authentication at the broker's endpoints (RFC 6749 §2.3, RFC 7523 §2.2).
//!
//! Exactly one method per request: HTTP Basic, `client_secret` in the form, or a
//! `client_assertion` (private_key_jwt). Secrets are compared as SHA-256 hashes in constant
//! time; assertions are verified by a zsp `Verifier` per client (its keys, `iss` = the client,
//! `aud` = the broker's issuer or endpoint URL, lifetime ≤ 60 s, single-use `jti`).

use axum::http::{HeaderMap, Method, header};
use base64::Engine;

use super::config::{ClientAuth, ClientPolicy};
use super::error::OAuthError;
use super::{Form, State};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The identity a request claims before it is verified, for rate limiting.
pub(crate) fn claimed_id(headers: &HeaderMap, form: &Form) -> Option<String> {
    if let Some((id, _)) = basic(headers) {
        return Some(id);
    }
    form.one("client_id").map(str::to_owned)
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
    let id = form_decode(id)?;
    let secret = form_decode(secret)?;
    Some((id, secret))
}

fn form_decode(s: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
    pairs.into_iter().next().map(|(_, v)| v)
}

/// Authenticates the calling client.
pub(crate) async fn authenticate<'s>(
    state: &'s State,
    headers: &HeaderMap,
    form: &Form,
) -> Result<&'s ClientPolicy, OAuthError> {
    let has_basic = headers.get(header::AUTHORIZATION).is_some();
    let has_secret = form.has("client_secret");
    let has_assertion = form.has("client_assertion");
    if [has_basic, has_secret, has_assertion]
        .iter()
        .filter(|b| **b)
        .count()
        != 1
    {
        return Err(if has_basic || has_secret || has_assertion {
            OAuthError::InvalidRequest("use exactly one client authentication method")
        } else {
            OAuthError::InvalidClient { basic: false }
        });
    }
    if has_basic {
        let (id, secret) = basic(headers).ok_or(OAuthError::InvalidClient { basic: true })?;
        if form.one("client_id").is_some_and(|c| c != id) {
            return Err(OAuthError::InvalidRequest(
                "client_id does not match the credentials",
            ));
        }
        return check_secret(state, &id, &secret).ok_or(OAuthError::InvalidClient { basic: true });
    }
    if has_secret {
        let id = form
            .one("client_id")
            .ok_or(OAuthError::InvalidClient { basic: false })?;
        let secret = form
            .one("client_secret")
            .ok_or(OAuthError::InvalidClient { basic: false })?;
        return check_secret(state, id, secret).ok_or(OAuthError::InvalidClient { basic: false });
    }
    if form.one("client_assertion_type") != Some(ASSERTION_TYPE) {
        return Err(OAuthError::InvalidRequest("unsupported client_assertion_type"));
    }
    let assertion = form
        .one("client_assertion")
        .ok_or(OAuthError::InvalidClient { basic: false })?;
    // The client is named by the assertion's own iss/sub; read it unverified only to pick the
    // verifier, which then checks iss against that very client.
    let id = match form.one("client_id") {
        Some(id) => id.to_owned(),
        None => unverified_issuer(assertion).ok_or(OAuthError::InvalidClient { basic: false })?,
    };
    let verifier = state
        .assertion_verifiers
        .get(&id)
        .ok_or(OAuthError::InvalidClient { basic: false })?;
    let facts = zsp_core::RequestFacts::new(&Method::POST, "/token");
    let grant = verifier.verify(assertion, &facts).await.map_err(|d| {
        tracing::info!(target: "zsp::audit", decision = "deny", reason = d.reason(), client_id = %id,
            "client assertion refused");
        OAuthError::InvalidClient { basic: false }
    })?;
    if grant.subject() != Some(id.as_str()) {
        return Err(OAuthError::InvalidClient { basic: false });
    }
    state
        .policy
        .client(&id)
        .ok_or(OAuthError::InvalidClient { basic: false })
}

fn check_secret<'s>(state: &'s State, id: &str, secret: &str) -> Option<&'s ClientPolicy> {
    let client = state.policy.client(id);
    let presented = zsp_core::crypto::sha256(secret.as_bytes());
    // Compare against a dummy for unknown clients too, so timing does not reveal which ids exist.
    let expected = match client.map(|c| &c.auth) {
        Some(ClientAuth::SecretSha256(h)) => *h,
        _ => [0u8; 32],
    };
    let ok = zsp_core::crypto::ct_eq(&presented, &expected);
    match client {
        Some(c) if ok && matches!(c.auth, ClientAuth::SecretSha256(_)) => Some(c),
        _ => None,
    }
}

fn unverified_issuer(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    if payload.len() > 8192 {
        return None;
    }
    let bytes = zsp_core::b64::decode(payload).ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    serde_json::from_slice::<Iss>(&bytes).ok().map(|i| i.iss)
}
