//! `POST /token`: client_credentials (RFC 6749 §4.4) and token exchange (RFC 8693).
//!
//! Every answer is either a token no wider than policy allows, or an RFC 6749 §5.2 error;
//! both emit an audit event.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use zsp_core::dpop::{DPOP_NONCE, proof_header_values};
use zsp_core::{Actor, Denial, MintRequest, Minter, RequestFacts, ScopeSet};

use super::client_auth::{authenticate, claimed_id};
use super::config::ClientPolicy;
use super::error::OAuthError;
use super::{Form, State};

pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

pub(crate) async fn handle(AxState(s): AxState<Arc<State>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut audit = Audit::default();
    let result = issue(&s, &headers, &body, &mut audit).await;
    match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::info!(target: "zsp::audit", decision = "deny", reason = e.code(),
                client_id = audit.client_id.as_deref(), grant_type = audit.grant_type.as_deref(),
                "token request refused");
            e.into_response()
        }
    }
}

#[derive(Default)]
struct Audit {
    client_id: Option<String>,
    grant_type: Option<String>,
}

async fn issue(
    s: &State,
    headers: &HeaderMap,
    body: &[u8],
    audit: &mut Audit,
) -> Result<Response, OAuthError> {
    let form = Form::parse(body)?;
    audit.grant_type = form.one("grant_type").map(str::to_owned);
    if let Some(id) = claimed_id(headers, &form)
        && s.policy.client(&id).is_some()
        && !s.limiter.allow(&id)
    {
        audit.client_id = Some(id);
        return Err(OAuthError::RateLimited);
    }
    // The proof is checked before client authentication: a use_dpop_nonce round trip must not
    // burn a single-use private_key_jwt assertion.
    let jkt = dpop_proof(s, headers).await?;
    let client = authenticate(s, headers, &form).await?;
    audit.client_id = Some(client.id.clone());
    if claimed_id(headers, &form).is_none() && !s.limiter.allow(&client.id) {
        return Err(OAuthError::RateLimited);
    }
    let grant = match form.one("grant_type") {
        Some("client_credentials") => client_credentials(s, client, &form)?,
        Some(TOKEN_EXCHANGE) => exchange(s, client, &form).await?,
        Some(_) => return Err(OAuthError::UnsupportedGrantType),
        None => return Err(OAuthError::InvalidRequest("grant_type is required")),
    };
    if client.dpop_required && jkt.is_none() {
        return Err(OAuthError::InvalidDpopProof("this client must send a DPoP proof"));
    }
    mint(s, client, grant, jkt.map(String::from))
}

/// What the grant resolved to, before minting.
struct Resolved {
    audience: String,
    scopes: ScopeSet,
    ttl: Duration,
    subject: String,
    act: Option<Actor>,
    exchange: bool,
}

/// RFC 8707 `resource` (once) or RFC 8693 `audience`; defaults to the client's only audience.
fn requested_audience(client: &ClientPolicy, form: &Form) -> Result<String, OAuthError> {
    let mut resources = form.all("resource");
    let resource = resources.next();
    if resources.next().is_some() {
        return Err(OAuthError::InvalidTarget("one resource per token"));
    }
    let aud = match (resource, form.one("audience")) {
        (Some(r), None) => r.to_owned(),
        (None, Some(a)) => a.to_owned(),
        (Some(r), Some(a)) if r == a => r.to_owned(),
        (Some(_), Some(_)) => return Err(OAuthError::InvalidTarget("resource and audience differ")),
        (None, None) => match client.audiences.as_slice() {
            [only] => only.clone(),
            _ => return Err(OAuthError::InvalidTarget("resource is required")),
        },
    };
    if !client.audiences.contains(&aud) {
        return Err(OAuthError::InvalidTarget("audience not allowed for this client"));
    }
    Ok(aud)
}

fn requested_scopes(form: &Form, allowed: &ScopeSet) -> Result<ScopeSet, OAuthError> {
    match form.one("scope") {
        // RFC 6749 §3.3: absent scope means the pre-defined default, here all it may have.
        None => Ok(allowed.clone()),
        Some(s) => {
            let req: ScopeSet = s.parse().unwrap_or_default();
            if req.is_subset(allowed) {
                Ok(req)
            } else {
                Err(OAuthError::InvalidScope(
                    "scope exceeds what this client may have",
                ))
            }
        }
    }
}

fn client_cap(s: &State, client: &ClientPolicy) -> Duration {
    client.max_ttl.min(s.policy.max_ttl)
}

fn client_credentials(s: &State, client: &ClientPolicy, form: &Form) -> Result<Resolved, OAuthError> {
    let audience = requested_audience(client, form)?;
    let allowed: ScopeSet = client.scopes.iter().map(String::as_str).collect();
    let scopes = requested_scopes(form, &allowed)?;
    Ok(Resolved {
        audience,
        scopes,
        ttl: client_cap(s, client),
        subject: client.id.clone(),
        act: None,
        exchange: false,
    })
}

async fn exchange(s: &State, client: &ClientPolicy, form: &Form) -> Result<Resolved, OAuthError> {
    let verifier = s
        .exchange_verifiers
        .get(&client.id)
        .ok_or(OAuthError::UnauthorizedClient("client may not exchange tokens"))?;
    match form.one("subject_token_type") {
        Some(ACCESS_TOKEN_TYPE) | Some(JWT_TOKEN_TYPE) => {}
        _ => return Err(OAuthError::InvalidRequest("unsupported subject_token_type")),
    }
    if form.has("actor_token") {
        // The authenticated client is the actor; a second actor credential adds nothing here.
        return Err(OAuthError::InvalidRequest(
            "actor_token is not supported; the client is the actor",
        ));
    }
    let subject_token = form
        .one("subject_token")
        .ok_or(OAuthError::InvalidRequest("subject_token is required"))?;
    let facts = RequestFacts::new(&Method::POST, "/token");
    let subject = verifier.verify(subject_token, &facts).await.map_err(|d| {
        tracing::info!(target: "zsp::audit", decision = "deny", reason = d.reason(), client_id = %client.id,
            "subject token refused");
        OAuthError::InvalidGrant("subject token is invalid, expired or revoked")
    })?;
    let audience = requested_audience(client, form)?;
    // Never wider than the subject token, and never beyond what the client itself may have.
    let allowed: ScopeSet = subject
        .scopes()
        .iter()
        .filter(|sc| client.scopes.iter().any(|c| c == sc))
        .collect();
    let scopes = requested_scopes(form, &allowed)?;
    let now = s.clock.now();
    let remaining = subject.expires_at().saturating_sub(now);
    if remaining == 0 {
        return Err(OAuthError::InvalidGrant(
            "subject token is invalid, expired or revoked",
        ));
    }
    let ttl = client_cap(s, client).min(Duration::from_secs(remaining));
    let act = Actor {
        sub: Some(client.id.clone()),
        client_id: Some(client.id.clone()),
        act: subject.act().cloned().map(Box::new),
    };
    let sub = subject
        .subject()
        .map(str::to_owned)
        .unwrap_or_else(|| client.id.clone());
    Ok(Resolved {
        audience,
        scopes,
        ttl,
        subject: sub,
        act: Some(act),
        exchange: true,
    })
}

/// RFC 9449 §5: a `DPoP` proof on the token request binds the token to its key. Every §4.3
/// check applies, with htm `POST` and htu the token endpoint; no `ath` (no token yet).
/// Returns the proof key's thumbprint, or `None` when no proof was sent.
async fn dpop_proof(s: &State, headers: &HeaderMap) -> Result<Option<zsp_core::dpop::Jkt>, OAuthError> {
    let proofs =
        proof_header_values(headers).map_err(|_| OAuthError::InvalidDpopProof("invalid DPoP proof"))?;
    if proofs.is_empty() {
        return Ok(None);
    }
    let now = s.clock.now();
    match s
        .dpop
        .verify(&proofs, &Method::POST, &s.token_endpoint, None, None, now)
        .await
    {
        Ok(jkt) => Ok(Some(jkt)),
        Err(Denial::UseDpopNonce) => match s.dpop.fresh_nonce(now) {
            Some(nonce) => Err(OAuthError::UseDpopNonce(nonce)),
            None => Err(OAuthError::InvalidDpopProof("invalid DPoP proof")),
        },
        Err(d @ (Denial::StoreUnavailable(_) | Denial::ReplayStoreFull)) => {
            tracing::warn!(target: "zsp::broker", reason = d.reason(), "DPoP replay store failed; refusing");
            Err(OAuthError::ServerError)
        }
        Err(d) => {
            tracing::info!(target: "zsp::audit", decision = "deny", reason = d.reason(),
                detail = %d, "DPoP proof refused at the token endpoint");
            // The detail stays in the audit log; the client learns only the error code.
            Err(OAuthError::InvalidDpopProof("invalid DPoP proof"))
        }
    }
}

fn mint(s: &State, client: &ClientPolicy, g: Resolved, jkt: Option<String>) -> Result<Response, OAuthError> {
    let key = s.keys.active();
    let minter = Minter::new(s.policy.issuer.clone(), key, client_cap(s, client)).with_clock(s.clock.clone());
    let req = MintRequest {
        subject: Some(g.subject.clone()),
        audiences: vec![g.audience.clone()],
        scopes: g.scopes.iter().map(str::to_owned).collect(),
        ttl: g.ttl,
        client_id: Some(client.id.clone()),
        jkt: jkt.clone(),
        act: g.act,
        not_before: None,
        single_use: client.single_use,
        extra: Default::default(),
    };
    let minted = minter.mint(&req).map_err(|e| {
        tracing::error!(target: "zsp::broker", error = %e, "minting failed");
        OAuthError::ServerError
    })?;
    let expires_in = minted.expires_at - minted.issued_at;
    tracing::info!(target: "zsp::audit", decision = "allow", reason = "issued", client_id = %client.id,
        sub = %g.subject, aud = %g.audience, scopes = %g.scopes, jti = %minted.jti, ttl = expires_in,
        exchange = g.exchange, "token issued");
    let mut body = serde_json::json!({
        "access_token": minted.token,
        "token_type": if jkt.is_some() { "DPoP" } else { "Bearer" },
        "expires_in": expires_in,
        "scope": g.scopes.to_string(),
    });
    if g.exchange {
        body["issued_token_type"] = ACCESS_TOKEN_TYPE.into();
    }
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    // RFC 9449 §8.2: a fresh nonce on success spares the client the next use_dpop_nonce.
    if let Some(v) = s
        .dpop
        .fresh_nonce(s.clock.now())
        .and_then(|n| HeaderValue::from_str(&n).ok())
    {
        resp.headers_mut().insert(DPOP_NONCE, v);
    }
    Ok(resp)
}
