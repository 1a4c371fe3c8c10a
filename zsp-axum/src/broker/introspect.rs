//! `POST /revoke` (RFC 7009) and `POST /introspect` (RFC 7662).
//!
//! Both authenticate the caller. A token is only ever inspected after its signature verified
//! with one of the broker's own published keys.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use zsp_core::{Claims, KeySource, RevocationQuery};

use super::client_auth::authenticate;
use super::error::OAuthError;
use super::{Form, LEEWAY_SECS, State};

/// The claims of a token the broker signed, or `None` for anything else.
fn own_token(s: &State, token: &str) -> Option<Claims> {
    if token.len() > 8192 {
        return None;
    }
    let mut parts = token.split('.');
    let (h, p, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
        kid: Option<String>,
    }
    let header: Header = serde_json::from_slice(&zsp_core::b64::decode(h).ok()?).ok()?;
    let keys = s.key_source.current()?;
    let key = keys.get(header.kid.as_deref())?;
    if zsp_core::keys::parse_alg(&header.alg)? != key.algorithm() {
        return None;
    }
    let signature = zsp_core::b64::decode(sig).ok()?;
    if !key.verify(&token.as_bytes()[..h.len() + 1 + p.len()], &signature) {
        return None;
    }
    let claims: Claims = serde_json::from_slice(&zsp_core::b64::decode(p).ok()?).ok()?;
    (claims.iss.as_deref() == Some(s.policy.issuer.as_str())).then_some(claims)
}

pub(crate) async fn revoke(AxState(s): AxState<Arc<State>>, headers: HeaderMap, body: Bytes) -> Response {
    match revoke_inner(&s, &headers, &body).await {
        Ok(()) => {
            let mut r = StatusCode::OK.into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn revoke_inner(s: &State, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthError> {
    let form = Form::parse(body)?;
    let client = authenticate(s, headers, &form).await?;
    let token = form
        .one("token")
        .ok_or(OAuthError::InvalidRequest("token is required"))?;
    // RFC 7009 §2.2: invalid or unknown tokens get 200; there is nothing to revoke.
    let Some(claims) = own_token(s, token) else {
        return Ok(());
    };
    if claims.client_id.as_deref() != Some(client.id.as_str()) {
        tracing::info!(target: "zsp::audit", decision = "deny", reason = "not_token_owner",
            client_id = %client.id, jti = claims.jti.as_deref(), "revocation refused");
        return Err(OAuthError::UnauthorizedClient(
            "token was not issued to this client",
        ));
    }
    let (Some(jti), Some(exp)) = (claims.jti.as_deref(), claims.exp) else {
        return Ok(());
    };
    s.revocation
        .revoke_jti(jti, exp.saturating_add(LEEWAY_SECS))
        .await
        .map_err(|e| {
            tracing::error!(target: "zsp::broker", error = %e, "revocation store failed");
            OAuthError::ServerError
        })?;
    tracing::info!(target: "zsp::audit", decision = "revoke", client_id = %client.id, jti = %jti,
        "token revoked");
    Ok(())
}

pub(crate) async fn introspect(AxState(s): AxState<Arc<State>>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let form = Form::parse(&body)?;
        let client = authenticate(&s, &headers, &form).await?;
        let token = form
            .one("token")
            .ok_or(OAuthError::InvalidRequest("token is required"))?;
        Ok::<_, OAuthError>(describe(&s, &client.id, client.exchange_audience.as_deref(), token).await)
    }
    .await;
    match result {
        Ok(v) => {
            let mut r = axum::Json(v).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn describe(s: &State, caller: &str, caller_aud: Option<&str>, token: &str) -> serde_json::Value {
    let inactive = serde_json::json!({ "active": false });
    let Some(c) = own_token(s, token) else {
        return inactive;
    };
    // Only the token's client or the service it was issued for may learn about it.
    let aud_ok = caller_aud.is_some_and(|a| c.aud.as_ref().is_some_and(|aud| aud.contains(a)));
    if c.client_id.as_deref() != Some(caller) && !aud_ok {
        return inactive;
    }
    let now = s.clock.now();
    let (Some(exp), Some(iat)) = (c.exp, c.iat) else {
        return inactive;
    };
    if now >= exp.saturating_add(LEEWAY_SECS) {
        return inactive;
    }
    let q = RevocationQuery {
        jti: c.jti.as_deref(),
        sub: c.sub.as_deref(),
        client_id: c.client_id.as_deref(),
        iat,
        now,
    };
    // A store that cannot answer makes the token inactive: fail closed.
    if !matches!(s.revocation.is_revoked(&q).await, Ok(false)) {
        return inactive;
    }
    let mut v = serde_json::json!({
        "active": true,
        "iss": c.iss,
        "sub": c.sub,
        "aud": c.aud,
        "exp": exp,
        "iat": iat,
        "jti": c.jti,
        "client_id": c.client_id,
        "scope": c.scopes().to_string(),
        "token_type": if c.cnf.is_some() { "DPoP" } else { "Bearer" },
    });
    if let Some(cnf) = &c.cnf {
        v["cnf"] = serde_json::json!(cnf);
    }
    if let Some(act) = &c.act {
        v["act"] = serde_json::json!(act);
    }
    v
}
