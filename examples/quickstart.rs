//! Quickstart: `cargo run --example quickstart`
//!
//! A broker, a protected orders API and a client in ONE process on 127.0.0.1 ephemeral ports,
//! with embedded defaults: nothing to install or configure. It narrates each step and checks
//! that every decision is the one zsp promises; it exits non-zero if any is not.

#[path = "support/orders_api.rs"]
mod orders_api;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tower::{Service, ServiceBuilder, ServiceExt};
use zsp::axum::broker::{Broker, BrokerPolicy, ClientPolicy};
use zsp::core::dpop::{DpopKey, DpopMode, DpopVerifier};
use zsp::core::{MemoryRevocation, MintRequest, Minter, RemoteJwks, SigningKey, Verifier};
use zsp::tower::outbound::{
    AttachLayer, CachedTokenSource, ClientCredentials, ReqwestService, TokenEndpoint, TokenRequest,
    TokenSource,
};

const CLIENT_ID: &str = "frontend";
const CLIENT_SECRET: &str = "quickstart-secret-0123456789abcdef0123456789abcdef";
const AUDIENCE: &str = "orders-api";

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Narrator {
    step: usize,
    failures: usize,
}

impl Narrator {
    fn check(&mut self, what: &str, got: u16, want: u16, detail: &str) {
        self.step += 1;
        let mark = if got == want { "ok  " } else { "FAIL" };
        if got != want {
            self.failures += 1;
        }
        println!("[{mark}] {}. {what}: {got} (expected {want}){detail}", self.step);
    }
}

async fn serve(listener: tokio::net::TcpListener, app: axum::Router) {
    let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // 1. The broker, with its policy: `frontend` may read and write orders, for 60 s at most.
    let broker_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://{}", broker_listener.local_addr()?);
    let broker_key = SigningKey::generate_es256("quickstart-key-1")?;
    let revocations = Arc::new(MemoryRevocation::default());
    let policy = BrokerPolicy::builder(&issuer)
        .max_ttl(Duration::from_secs(60))
        .client(
            ClientPolicy::with_secret(CLIENT_ID, CLIENT_SECRET)
                .audience(AUDIENCE)
                .scopes(&["orders:read", "orders:write"])
                .max_ttl(Duration::from_secs(60)),
        )
        .build()?;
    let broker = Broker::builder(policy)
        .signing_key(broker_key.clone())
        .revocation(revocations.clone())
        .build()?;
    tokio::spawn(serve(broker_listener, broker.router()));
    println!("broker   {issuer}  (signs ES256 tokens, max 60 s)");

    // 2. The API: keys discovered from the broker (RFC 8414), revocations shared with it.
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", api_listener.local_addr()?);
    let settings = orders_api::ApiSettings::new(&issuer, AUDIENCE);
    let jwks = RemoteJwks::builder().issuer(issuer.clone()).build()?;
    let verifier = Verifier::builder(settings.policy()?, Arc::new(jwks))
        .revocation(revocations.clone())
        .build();
    let dpop = DpopVerifier::builder().mode(DpopMode::Optional).build()?;
    let layer = zsp::axum::extract::verify_layer(verifier)
        .dpop(dpop)
        .public_url(&api);
    tokio::spawn(serve(api_listener, orders_api::app(layer)));
    println!("api      {api}  (GET needs orders:read, POST orders:write once, DELETE orders:admin)");

    // 3. The client: no stored API key, only a way to ask the broker for short-lived tokens.
    let endpoint = TokenEndpoint::builder()
        .issuer(issuer.clone())
        .client_id(CLIENT_ID)
        .client_secret_basic(CLIENT_SECRET)
        .build()?;
    let tokens = CachedTokenSource::new(ClientCredentials::new(endpoint));
    let read = TokenRequest::new(AUDIENCE).scopes(["orders:read"]);
    let http = reqwest::Client::new();
    let mut client = ServiceBuilder::new()
        .layer(AttachLayer::new(tokens.clone(), read.clone()))
        .service(ReqwestService::new(http.clone()));
    println!("client   {CLIENT_ID} (client_secret_basic → broker, token cached for seconds)\n");

    let mut n = Narrator { step: 0, failures: 0 };

    let mut ok = 0;
    for _ in 0..50 {
        let req = http::Request::get(format!("{api}/orders")).body(reqwest::Body::from(Vec::new()))?;
        let resp = ServiceExt::<http::Request<reqwest::Body>>::ready(&mut client)
            .await?
            .call(req)
            .await?;
        ok += usize::from(resp.status().is_success());
    }
    let fetches = tokens.stats().fetches;
    let token = tokens.token(&read).await?;
    n.check(
        "50 reads through the outbound layer",
        if ok == 50 { 200 } else { 500 },
        200,
        &format!(
            " — {ok}/50 OK, {fetches} broker call(s) for one {} s token",
            token.lifetime()
        ),
    );

    let resp = http
        .get(format!("{api}/orders/42"))
        .header("authorization", format!("Bearer {}", token.secret()))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body = resp.text().await?;
    n.check("allowed read GET /orders/42", status, 200, &format!(" — {body}"));

    let resp = http
        .delete(format!("{api}/orders/42"))
        .header("authorization", format!("Bearer {}", token.secret()))
        .send()
        .await?;
    let challenge = header(&resp, "www-authenticate");
    n.check(
        "DELETE /orders/42 with a token lacking orders:admin",
        resp.status().as_u16(),
        403,
        &format!(" — {challenge}"),
    );

    let write = tokens
        .token(&TokenRequest::new(AUDIENCE).scopes(["orders:write"]))
        .await?;
    let post = || {
        http.post(format!("{api}/orders"))
            .header("authorization", format!("Bearer {}", write.secret()))
            .send()
    };
    n.check(
        "single-use write POST /orders",
        post().await?.status().as_u16(),
        201,
        "",
    );
    let resp = post().await?;
    n.check(
        "the same write token replayed",
        resp.status().as_u16(),
        401,
        &format!(" — {}", header(&resp, "www-authenticate")),
    );

    let revoke = http
        .post(format!("{issuer}/revoke"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", token.secret())])
        .send()
        .await?;
    n.check(
        "client revokes its read token at the broker (RFC 7009)",
        revoke.status().as_u16(),
        200,
        "",
    );
    let resp = http
        .get(format!("{api}/orders"))
        .header("authorization", format!("Bearer {}", token.secret()))
        .send()
        .await?;
    n.check(
        "the revoked token on the very next request",
        resp.status().as_u16(),
        401,
        "",
    );

    // Tokens no correct broker would issue, signed with the real broker key to show the API
    // refuses them on their claims alone.
    let rogue = Minter::new(issuer.clone(), broker_key, Duration::from_secs(3600));
    let mut standing = MintRequest::new(AUDIENCE, &["orders:read"], Duration::from_secs(3600));
    standing.subject = Some(CLIENT_ID.into());
    let standing = rogue.mint(&standing)?;
    let resp = http
        .get(format!("{api}/orders"))
        .header("authorization", format!("Bearer {}", standing.token))
        .send()
        .await?;
    n.check(
        "a 1-hour \"standing\" token (cap is 300 s)",
        resp.status().as_u16(),
        401,
        "",
    );

    let req = MintRequest::new(AUDIENCE, &["orders:read"], Duration::from_secs(60));
    let expired = rogue.mint_unchecked(&req, rogue.now() - 180, 60)?;
    let resp = http
        .get(format!("{api}/orders"))
        .header("authorization", format!("Bearer {}", expired.token))
        .send()
        .await?;
    n.check(
        "a token that expired two minutes ago",
        resp.status().as_u16(),
        401,
        "",
    );

    // Sender-constrained: a DPoP-bound token is useless without the client's private key.
    let key = DpopKey::generate()?;
    let bound_req = read.clone().dpop_key(key.clone());
    let mut dpop_client = ServiceBuilder::new()
        .layer(AttachLayer::new(tokens.clone(), read.clone()).dpop(key))
        .service(ReqwestService::new(http.clone()));
    let req = http::Request::get(format!("{api}/orders")).body(reqwest::Body::from(Vec::new()))?;
    let resp = ServiceExt::<http::Request<reqwest::Body>>::ready(&mut dpop_client)
        .await?
        .call(req)
        .await?;
    n.check(
        "DPoP-bound token with a fresh proof per request",
        resp.status().as_u16(),
        200,
        "",
    );
    let stolen = tokens.token(&bound_req).await?;
    let resp = http
        .get(format!("{api}/orders"))
        .header("authorization", format!("Bearer {}", stolen.secret()))
        .send()
        .await?;
    n.check(
        "that bound token stolen and replayed without the key",
        resp.status().as_u16(),
        401,
        "",
    );

    let resp = http.get(format!("{api}/orders")).send().await?;
    n.check(
        "no token at all",
        resp.status().as_u16(),
        401,
        &format!(" — {}", header(&resp, "www-authenticate")),
    );

    println!();
    if n.failures == 0 {
        println!("done: {} steps, every decision as expected", n.step);
        Ok(())
    } else {
        Err(format!("{} of {} steps did not behave as expected", n.failures, n.step).into())
    }
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}
