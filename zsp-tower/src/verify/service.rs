//! [`VerifyService`]: the per-request work of the inbound layer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, HOST, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, Response};
use tower_service::Service;
use tracing::Instrument;
use zsp_core::dpop::{DPOP, DPOP_NONCE, DpopMode, TokenScheme};
use zsp_core::{AuditDecision, AuditEvent, Denial, Grant, RequestFacts};

use super::future::ResponseFuture;
use super::layer::Config;

/// Verifies the access token of each request before calling the inner service.
///
/// Built by [`super::VerifyLayer`]; clones share the layer's configuration.
#[derive(Clone)]
pub struct VerifyService<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for VerifyService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> VerifyService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// The credentials a request presents, borrowed from its `Authorization` header.
#[cfg(test)]
enum Credential<'a> {
    Bearer(&'a str),
    DPoP(&'a str),
}

/// A token as the `Authorization` header presents it, before its own syntax is checked.
enum Presented<'a> {
    Bearer(&'a [u8]),
    DPoP(&'a [u8]),
}

/// RFC 6750 §2.1 / RFC 9449 §7.1 credentials, refusing the forms RFC 6750 §5.3 and §2.3
/// warn against: ambiguous headers and tokens in URLs (which end up in logs and caches).
/// The token's own syntax is [`token_text`]'s to check: the verifier skips that for a token
/// it has verified before ([`zsp_core::Verifier::verify_bytes_now`]).
fn presented<'a>(headers: &'a HeaderMap, query: Option<&str>) -> Result<Option<Presented<'a>>, Denial> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Denial::InvalidRequest("more than one Authorization header"));
    }
    if query.is_some_and(query_has_access_token) {
        return Err(Denial::InvalidRequest("access token in the query string"));
    }
    let Some(value) = first else {
        return Ok(None);
    };
    // Split on bytes: the scheme is a few bytes at the front, the token hundreds.
    let value = value.as_bytes();
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &value[value.len()..]),
    };
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let end = rest.iter().rposition(|&b| b != b' ').map_or(start, |i| i + 1);
    let token = &rest[start..end];
    if scheme.eq_ignore_ascii_case(b"bearer") {
        Ok(Some(Presented::Bearer(token)))
    } else if scheme.eq_ignore_ascii_case(b"dpop") {
        Ok(Some(Presented::DPoP(token)))
    } else {
        Err(Denial::InvalidRequest("unsupported authorization scheme"))
    }
}

/// The token's text: one run of non-space bytes (RFC 6750 §2.1 `b64token`), in UTF-8. A
/// header value may carry obs-text (bytes above 0x7f): no compact JWS does, and the verifier's
/// base64url decoding refuses it, so it is not searched for here.
fn token_text(scheme: TokenScheme, token: &[u8]) -> Result<&str, Denial> {
    let malformed = token.is_empty() || memchr::memchr(b' ', token).is_some();
    let token = std::str::from_utf8(token)
        .map_err(|_| Denial::InvalidRequest("Authorization header is not UTF-8"))?;
    match (malformed, scheme) {
        (false, _) => Ok(token),
        (true, TokenScheme::Dpop) => Err(Denial::InvalidRequest("malformed DPoP credentials")),
        (true, _) => Err(Denial::InvalidRequest("malformed Bearer credentials")),
    }
}

/// `bearer_text` for the verifier's hot path.
fn bearer_text(token: &[u8]) -> Result<&str, Denial> {
    token_text(TokenScheme::Bearer, token)
}

/// The credentials with the token's text: [`presented`], then [`token_text`].
#[cfg(test)]
fn credentials<'a>(headers: &'a HeaderMap, query: Option<&str>) -> Result<Option<Credential<'a>>, Denial> {
    Ok(match presented(headers, query)? {
        None => None,
        Some(Presented::Bearer(t)) => Some(Credential::Bearer(token_text(TokenScheme::Bearer, t)?)),
        Some(Presented::DPoP(t)) => Some(Credential::DPoP(token_text(TokenScheme::Dpop, t)?)),
    })
}

/// Whether the query has an `access_token` parameter (RFC 6750 §2.3), percent-decoding names
/// so `access%5Ftoken` is caught too.
fn query_has_access_token(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        percent_decode(name).as_deref() == Some(b"access_token".as_slice())
    })
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The right-most entry of a proxy header: the one the nearest (trusted) proxy appended.
fn forwarded_ip(headers: &HeaderMap, name: &http::HeaderName) -> Option<IpAddr> {
    let last_line = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    let entry = last_line.rsplit(',').next()?.trim();
    // RFC 7239 `Forwarded: for=…;proto=…` or a bare address (X-Forwarded-For).
    let value = entry
        .split(';')
        .find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
        })
        .unwrap_or(entry)
        .trim_matches('"');
    value
        .parse::<IpAddr>()
        .ok()
        .or_else(|| value.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            value
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .and_then(|v| v.parse().ok())
        })
}

fn has_dpop_challenge(headers: &HeaderMap) -> bool {
    headers.get_all(WWW_AUTHENTICATE).iter().any(|v| {
        v.as_bytes()
            .get(..4)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"dpop"))
    })
}

fn mark_sensitive(headers: &mut HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if name == AUTHORIZATION || name == DPOP {
            value.set_sensitive(true);
        }
    }
}

/// Whether a denial is about the DPoP presentation itself, so its error belongs on the
/// `DPoP` challenge whatever scheme the request used.
fn is_dpop_denial(denial: &Denial) -> bool {
    matches!(
        denial,
        Denial::InvalidDpopProof(_) | Denial::UseDpopNonce | Denial::DpopBoundTokenAsBearer
    )
}

impl Config {
    /// `scheme` is what the request used, `None` when it sent no usable credentials.
    fn deny<B: From<Bytes>>(&self, denial: &Denial, scheme: Option<TokenScheme>) -> Response<B> {
        let realm = self.verifier.policy().realm();
        let mut resp = match &self.on_denial {
            Some(hook) => hook(denial),
            None => super::denial_response(denial, realm),
        };
        if let Some(dpop) = &self.dpop {
            let headers = resp.headers_mut();
            // The error goes on the challenge of the scheme the client used (RFC 9449 §7.1);
            // the other scheme is offered bare so the client learns what else is accepted.
            let dpop_error = scheme == Some(TokenScheme::Dpop) || is_dpop_denial(denial);
            let bare = Denial::MissingToken;
            let dpop_challenge = dpop
                .challenge(if dpop_error { denial } else { &bare }, realm)
                .and_then(|c| HeaderValue::from_str(&c).ok());
            let bearer_challenge = (dpop.mode() == DpopMode::Optional)
                .then(|| (if dpop_error { &bare } else { denial }).www_authenticate(realm))
                .flatten()
                .and_then(|c| HeaderValue::from_str(&c).ok());
            if self.on_denial.is_none() {
                headers.remove(WWW_AUTHENTICATE);
                let (first, second) = if dpop_error {
                    (dpop_challenge, bearer_challenge)
                } else {
                    (bearer_challenge, dpop_challenge)
                };
                for value in [first, second].into_iter().flatten() {
                    headers.append(WWW_AUTHENTICATE, value);
                }
            } else if !has_dpop_challenge(headers)
                && let Some(value) = dpop_challenge
            {
                // A custom response keeps its own challenges; the DPoP one is added because
                // clients need it to recover (use_dpop_nonce) and to learn the algorithms.
                headers.append(WWW_AUTHENTICATE, value);
            }
            self.add_nonce(headers);
        }
        if !resp.headers().contains_key(CACHE_CONTROL) {
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        resp.map(B::from)
    }

    /// A fresh `DPoP-Nonce` on every response when nonces are required, so clients stay
    /// current without a failed request (RFC 9449 §8.2).
    fn add_nonce(&self, headers: &mut HeaderMap) {
        let Some(dpop) = &self.dpop else { return };
        if let Some(value) = dpop
            .fresh_nonce(self.verifier.now())
            .and_then(|n| HeaderValue::from_str(&n).ok())
        {
            headers.insert(DPOP_NONCE, value);
        }
    }

    /// The absolute URI the client sent this request to, without query: what a DPoP proof's
    /// `htu` must match. Empty when it cannot be known, which no proof matches.
    fn request_htu<B>(&self, req: &Request<B>) -> String {
        let path = req.uri().path();
        if let Some(base) = &self.public_url {
            return format!("{base}{path}");
        }
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        match host {
            Some(host) => format!("http://{host}{path}"),
            None => String::new(),
        }
    }

    fn client_ip(&self, headers: &HeaderMap, ext: &http::Extensions) -> Option<IpAddr> {
        match &self.trusted_proxy_header {
            Some(name) => forwarded_ip(headers, name),
            None => (self.client_ip)(ext),
        }
    }

    /// What the credentials decide before any token check: the token's bytes to verify (their
    /// syntax is [`token_text`]'s), or the outcome (each denial audited, as is an anonymous
    /// pass).
    fn screen<'r>(
        &self,
        headers: &'r HeaderMap,
        query: Option<&str>,
        facts: &RequestFacts<'_>,
    ) -> Result<(TokenScheme, &'r [u8]), Outcome> {
        let verifier = &self.verifier;
        let deny = |denial: Denial| {
            verifier.audit_denial(&denial, facts);
            Err(Outcome::Deny(denial, None))
        };
        match presented(headers, query) {
            Err(denial) => deny(denial),
            Ok(None) if self.anonymous => {
                verifier.record(&AuditEvent {
                    decision: AuditDecision::Allow,
                    reason: "anonymous",
                    iss: None,
                    sub: None,
                    client_id: None,
                    jti: None,
                    method: facts.method.as_str(),
                    route: None,
                    scopes: None,
                    elapsed_us: 0,
                });
                Err(Outcome::Anonymous)
            }
            Ok(None) => deny(Denial::MissingToken),
            // Never downgraded to Bearer: without a DPoP verifier the scheme is refused.
            Ok(Some(Presented::DPoP(_))) if self.dpop.is_none() => {
                deny(Denial::InvalidRequest("DPoP scheme not accepted"))
            }
            Ok(Some(Presented::DPoP(token))) => Ok((TokenScheme::Dpop, token)),
            Ok(Some(Presented::Bearer(token))) => Ok((TokenScheme::Bearer, token)),
        }
    }

    fn facts<'r, B>(&self, req: &'r Request<B>) -> RequestFacts<'r> {
        let facts = RequestFacts::new(req.method(), req.uri().path());
        // The address decides nothing without a source rule: not looked up then (two
        // extension lookups, or a header parse, per request).
        if self.verifier.policy().uses_source_addresses() {
            facts.client_ip(self.client_ip(req.headers(), req.extensions()))
        } else {
            facts
        }
    }
}

/// RFC 9449 §7.2 holds even where DPoP is not configured: a bound token is worthless without
/// its key, so it is never accepted as a bearer token.
fn not_bound(grant: &Grant) -> Result<(), Denial> {
    match grant.jkt() {
        Some(_) => Err(Denial::DpopBoundTokenAsBearer),
        None => Ok(()),
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VerifyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The span is the tracing audit event's context: none without it. No fields: the event
        // carries the method and route, and formatting span fields costs every request.
        let span = if self.config.verifier.audits() {
            tracing::info_span!(target: "zsp::verify", "zsp.verify")
        } else {
            tracing::Span::none()
        };
        mark_sensitive(req.headers_mut());
        if self.config.dpop.is_some() {
            // A DPoP proof is checked asynchronously (its replay store): all of it is boxed.
            return self.call_waiting(req, span);
        }
        // Without DPoP, a request is usually decided right here: no future to box, and the
        // inner service is called directly (it was polled ready for this call).
        let config = &self.config;
        let decided = {
            let _entered = span.enter();
            let facts = config.facts(&req);
            match config.screen(req.headers(), req.uri().query(), &facts) {
                Err(outcome) => Ok(outcome),
                // Without a DPoP verifier the scheme is Bearer. A reused token is recognised
                // from its bytes: its syntax was checked when it first verified.
                Ok((_, token)) => {
                    match config
                        .verifier
                        .verify_bytes_now(token, bearer_text, &facts, not_bound)
                    {
                        Ok(Ok(grant)) => Ok(Outcome::Allow(grant)),
                        Ok(Err(denial)) => Ok(Outcome::Deny(denial, Some(TokenScheme::Bearer))),
                        Err(unfinished) => Err(unfinished),
                    }
                }
            }
        };
        match decided {
            Ok(Outcome::Allow(grant)) => {
                req.extensions_mut().insert(grant);
                ResponseFuture::inner(self.inner.call(req), span)
            }
            Ok(Outcome::Anonymous) => {
                // Only this layer puts a Grant in; anything already there did not come from it.
                // (An allowed request's insert replaces it; a denied one goes no further.)
                req.extensions_mut().remove::<Grant>();
                ResponseFuture::inner(self.inner.call(req), span)
            }
            Ok(Outcome::Deny(denial, scheme)) => ResponseFuture::denied(config.deny(&denial, scheme)),
            Err(unfinished) => self.call_unfinished(req, unfinished, span),
        }
    }
}

impl<S> VerifyService<S> {
    /// The inner service that was polled ready, for a request served later from a future; a
    /// fresh clone takes its place (tower's rule: only a service that said ready may be called).
    fn take_ready(&mut self) -> S
    where
        S: Clone,
    {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }

    /// A request [`Verifier::verify_bytes_now`](zsp_core::Verifier::verify_bytes_now) left
    /// for a store or a key refresh. Its own function, not inlined: the future it builds is
    /// large, and kept out of `call` it leaves the decided path's code compact (under load,
    /// every line of it is fetched again on each request).
    #[inline(never)]
    fn call_unfinished<ReqBody, ResBody>(
        &mut self,
        mut req: Request<ReqBody>,
        unfinished: zsp_core::Unfinished,
        span: tracing::Span,
    ) -> ResponseFuture<S::Future, ResBody, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        ReqBody: Send + 'static,
        ResBody: From<Bytes> + Send + 'static,
    {
        let mut inner = self.take_ready();
        let config = self.config.clone();
        let fut = async move {
            let verdict = {
                let facts = config.facts(&req);
                config.verifier.finish(unfinished, &facts, not_bound).await
            };
            match verdict {
                Ok(grant) => {
                    req.extensions_mut().insert(grant);
                    inner.call(req).await
                }
                Err(denial) => Ok(config.deny(&denial, Some(TokenScheme::Bearer))),
            }
        };
        ResponseFuture::waiting(Box::pin(fut.instrument(span)))
    }

    /// The whole request as one boxed future: the path with a DPoP verifier, whose proof
    /// check may wait.
    fn call_waiting<ReqBody, ResBody>(
        &mut self,
        mut req: Request<ReqBody>,
        span: tracing::Span,
    ) -> ResponseFuture<S::Future, ResBody, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        ReqBody: Send + 'static,
        ResBody: From<Bytes> + Send + 'static,
    {
        let mut inner = self.take_ready();
        let config = self.config.clone();
        let fut = async move {
            let verifier = &config.verifier;
            let outcome = {
                let method = req.method();
                let facts = config.facts(&req);
                let screened =
                    config
                        .screen(req.headers(), req.uri().query(), &facts)
                        .and_then(|(scheme, token)| match token_text(scheme, token) {
                            Ok(token) => Ok((scheme, token)),
                            Err(denial) => {
                                verifier.audit_denial(&denial, &facts);
                                Err(Outcome::Deny(denial, None))
                            }
                        });
                match screened {
                    Err(outcome) => outcome,
                    Ok((scheme, token)) => {
                        let htu = match (&config.dpop, scheme) {
                            (Some(_), TokenScheme::Dpop) => config.request_htu(&req),
                            _ => String::new(),
                        };
                        let headers = req.headers();
                        let dpop = config.dpop.as_ref();
                        let htu = &htu;
                        // The proof is checked inside the verifier, after revocation and before
                        // the replay guard, so a request with a bad proof never burns a
                        // single-use token.
                        let check = |grant: Grant| async move {
                            match dpop {
                                Some(dpop) => dpop
                                    .verify_presentation(scheme, &grant, headers, method, htu, verifier.now())
                                    .await
                                    .map(|_| ()),
                                None => not_bound(&grant),
                            }
                        };
                        match verifier.verify_with(token, &facts, check).await {
                            Ok(grant) => Outcome::Allow(grant),
                            Err(denial) => Outcome::Deny(denial, Some(scheme)),
                        }
                    }
                }
            };
            match outcome {
                Outcome::Allow(grant) => {
                    req.extensions_mut().insert(grant);
                }
                Outcome::Anonymous => {
                    req.extensions_mut().remove::<Grant>();
                }
                Outcome::Deny(denial, scheme) => return Ok(config.deny(&denial, scheme)),
            }
            let mut resp = inner.call(req).await?;
            config.add_nonce(resp.headers_mut());
            Ok(resp)
        };
        ResponseFuture::waiting(Box::pin(fut.instrument(span)))
    }
}

/// What the layer decided before calling the inner service.
enum Outcome {
    Allow(Grant),
    Anonymous,
    Deny(Denial, Option<TokenScheme>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn rfc6750_2_1_scheme_is_case_insensitive() {
        let h = headers(&[("authorization", "bEaReR abc.def.ghi")]);
        assert!(matches!(
            credentials(&h, None),
            Ok(Some(Credential::Bearer("abc.def.ghi")))
        ));
    }

    #[test]
    fn rfc6750_2_3_query_tokens_refused() {
        assert!(query_has_access_token("a=1&access_token=x"));
        assert!(query_has_access_token("access%5Ftoken=x"));
        assert!(query_has_access_token("access_token"));
        assert!(!query_has_access_token("access_tokens=1&x=access_token"));
        assert!(!query_has_access_token("%zz=1"));
        assert!(matches!(
            credentials(&HeaderMap::new(), Some("access_token=x")),
            Err(Denial::InvalidRequest(_))
        ));
    }

    #[test]
    fn two_authorization_headers_refused() {
        let h = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(matches!(credentials(&h, None), Err(Denial::InvalidRequest(_))));
    }

    #[test]
    fn other_schemes_and_junk_refused() {
        for v in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", "Bearer a b", ""] {
            let h = headers(&[("authorization", v)]);
            assert!(
                matches!(credentials(&h, None), Err(Denial::InvalidRequest(_))),
                "{v:?}"
            );
        }
        let h = headers(&[("authorization", "DPoP x.y.z")]);
        assert!(matches!(
            credentials(&h, None),
            Ok(Some(Credential::DPoP("x.y.z")))
        ));
        let h = headers(&[("authorization", "DPoP")]);
        assert!(matches!(credentials(&h, None), Err(Denial::InvalidRequest(_))));
    }

    /// The parse as text: the byte version must agree on every header value (a token that
    /// is not UTF-8 is refused; anything else is for the verifier to refuse).
    fn credentials_by_str(value: &[u8]) -> Result<Option<(bool, String)>, ()> {
        let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
            Some(i) => (&value[..i], &value[i + 1..]),
            None => (value, &[][..]),
        };
        let token = std::str::from_utf8(rest).map_err(|_| ())?.trim_matches(' ');
        if token.is_empty() || token.contains(' ') {
            return Err(());
        }
        match std::str::from_utf8(scheme)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Ok("bearer") => Ok(Some((false, token.to_owned()))),
            Ok("dpop") => Ok(Some((true, token.to_owned()))),
            _ => Err(()),
        }
    }

    proptest::proptest! {
        #[test]
        fn byte_parse_agrees_with_text_parse(
            scheme in "(Bearer|bearer|DPoP|dpop|Basic|B\u{e9}arer|)",
            spaces in "[ ]{0,3}",
            token in proptest::collection::vec(
                proptest::sample::select(b"AZaz09._- \t\xe9\xc3\xa9\xff".to_vec()),
                0..40,
            ),
        ) {
            let mut raw = format!("{scheme}{spaces}").into_bytes();
            raw.extend_from_slice(&token);
            let Ok(v) = HeaderValue::from_bytes(&raw) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, v);
            let got = match credentials(&h, None) {
                Ok(Some(Credential::Bearer(t))) => Ok(Some((false, t.to_owned()))),
                Ok(Some(Credential::DPoP(t))) => Ok(Some((true, t.to_owned()))),
                Ok(None) => Ok(None),
                Err(Denial::InvalidRequest(_)) => Err(()),
                Err(other) => panic!("unexpected denial {other:?}"),
            };
            proptest::prop_assert_eq!(got, credentials_by_str(&raw), "{:?}", raw);
        }
    }

    proptest::proptest! {
        #[test]
        fn untrusted_header_and_query_bytes_never_panic(
            auth in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            fwd in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            query in "\\PC*",
        ) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&auth) {
                h.insert(AUTHORIZATION, v);
            }
            if let Ok(v) = HeaderValue::from_bytes(&fwd) {
                h.insert(http::header::FORWARDED, v);
            }
            let _ = credentials(&h, Some(&query));
            let _ = forwarded_ip(&h, &http::header::FORWARDED);
        }
    }

    #[test]
    fn proxy_header_takes_rightmost_entry() {
        let name = http::HeaderName::from_static("x-forwarded-for");
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
            ("x-forwarded-for", "10.0.0.7"),
        ]);
        assert_eq!(forwarded_ip(&h, &name), Some("10.0.0.7".parse().unwrap()));
        let h = headers(&[("x-forwarded-for", "9.9.9.9, [2001:db8::1]:443")]);
        assert_eq!(forwarded_ip(&h, &name), Some("2001:db8::1".parse().unwrap()));
        let h = headers(&[("x-forwarded-for", "1.1.1.1, junk")]);
        assert_eq!(forwarded_ip(&h, &name), None);
        let fwd = http::header::FORWARDED;
        let h = headers(&[("forwarded", "for=1.2.3.4, for=\"[2001:db8::2]\";proto=https")]);
        assert_eq!(forwarded_ip(&h, &fwd), Some("2001:db8::2".parse().unwrap()));
    }
}
