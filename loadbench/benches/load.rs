//! Load benchmark (issue "Benchmarks"): the same axum hello-world (`GET /hello` → `hello`)
//! behind seven authentication set-ups, driven over loopback HTTP/1.1 keep-alive, server pinned
//! to one core and the load generator to the other.
//!
//! ```text
//! cargo bench --manifest-path loadbench/Cargo.toml
//! ZSP_LOAD_SECS=3 ZSP_LOAD_ROUNDS=5 ZSP_LOAD_CONNS=32 cargo bench --manifest-path loadbench/Cargo.toml
//! ZSP_LOAD_VARIANTS=1,4,7 ZSP_LOAD_SECS=1 ZSP_LOAD_ROUNDS=2 cargo bench --manifest-path loadbench/Cargo.toml  # smoke
//! ```
//!
//! Variants: (1) no auth; (2) a hand-written jsonwebtoken 11 middleware (aws-lc-rs backend,
//! `Validation` ES256 + iss/aud/exp); (3) `jwt-authorizer` 0.15 (its jsonwebtoken 9 / ring;
//! JWKS file, iss + aud + exp, ES256 only); (4) zsp `VerifyLayer` ES256 with a scope rule and
//! audit on; (5) zsp EdDSA, same policy; (6) zsp with the route single-use and the memory
//! replay guard, every request a fresh token; (7) zsp ES256 with the verified-signature cache,
//! one reused token. Extras, not in the issue's list: (8) is (7) with audit off, to show what
//! the audit event costs once the signature is out of the way; (9) and (10) are (4) and (7)
//! with the audit events going to zsp's `JsonLinesAudit` sink (also written to
//! `std::io::sink()`) instead of through tracing; (11) and (12) are (4) and (7) with the audit
//! events still going through tracing, to zsp's `JsonAuditLayer` (feature `audit-layer`) as the
//! subscriber instead of `fmt`, filtered to `zsp::audit`, so no request span is opened;
//! (13) is (4) with DPoP required (RFC 9449): the token is bound to the generator's key and
//! every request carries a proof never sent before, from a pool minted before each round like
//! (6)'s tokens (`ZSP_LOAD_DPOP_RATE` per second of round, default 10,000); (14) is (6) with the
//! replay guard in Redis (`RedisReplayGuard`), run only when `ZSP_REDIS_URL` names one: Redis is
//! a third process, unpinned, so (14)'s req/s depends on where the scheduler puts it, and its
//! server CPU per request counts zsp's side of the round trip only. (15) is (10) with the layer
//! put around the whole Router (`VerifyLayer::layer(router)`, served with
//! `axum::ServiceExt::into_make_service`) instead of inside it with `Router::layer`: axum
//! then boxes no per-route service clone and no response future for it, which every
//! `Router::layer` middleware, (2) and (3) included, pays on each request. (16) is (7) with
//! `zsp::verify` at WARN instead of INFO, so the inbound layer's `zsp.verify` request span (an
//! INFO span) is not opened: what the span costs is (16) against (7). (17) is (1), the
//! hello-world without a layer, sent (7)'s request: the same `Authorization` header, which
//! nothing reads. What it loses against (1) is what carrying a token costs any bearer scheme
//! (the bytes through the kernel, hyper parsing and storing the header) before a middleware
//! looks at it; (8) and (10) against (17) leave that cost out.
//!
//! Processes: `cargo bench` starts this binary (the launcher), which re-executes itself under
//! `taskset -c $ZSP_LOAD_CLIENT_CPU` (default 1) as the load generator; the generator starts one
//! server process per variant under `taskset -c $ZSP_LOAD_SERVER_CPU` (default 0). All servers
//! live for the whole run (idle ones cost nothing); each round runs every variant in turn, in
//! order in even rounds and in reverse in odd ones, each for a fixed time with a fixed number
//! of keep-alive connections, one request in flight per connection (closed loop, like wrk).
//! Targets are judged on the median of per-round ratios (`src/paired.rs`). Each variant judged
//! against (1) has its own slot of (1) beside it in every round (an anchor; `ZSP_LOAD_ANCHORS=0`
//! runs (1) once per round instead), and its ratio is taken against the (1) slots next to it:
//! the host's speed drifts within a round as much as between rounds. Servers exit when their
//! stdin closes, so none outlives the run.
//!
//! Each slot's line ends with `steal S % / G %`: the share of the slot's time the hypervisor
//! took from the server's and the generator's CPU (the `steal` column of `/proc/stat`), and
//! the run ends with the median and the most of the server's. On a shared host that is where
//! slow spells come from: a slot with much of it measured the host's neighbours as well.
//!
//! Every server process but (11) and (12) installs the same tracing subscriber: a `fmt` layer
//! (plain text, no ANSI colours, as a log file gets) writing to `std::io::sink()` with the
//! `zsp::audit` and `zsp::verify` targets enabled at INFO ((16): `zsp::verify` at WARN), so zsp
//! builds, formats and writes one audit event per request (the write itself goes nowhere); the
//! other variants emit nothing on those targets.
//!
//! Tokens: minted in the generator process by `zsp_core::testing::TestIssuer` (ES256 key,
//! kid `test-es256`; Ed25519 key, kid `test-ed25519`), audience `bench-api`, scope
//! `hello:read`, lifetime 300 s (zsp's cap), freshly before every round. The servers get only
//! the public keys, as JWKS files. For (6) a pool of `ZSP_LOAD_SINGLE_USE_RATE × round
//! seconds` (default 25,000/s, above what one core can verify) distinct tokens is minted before
//! each round, each sent once; if a round runs out, it ends early and is flagged.
//!
//! Other knobs: `ZSP_LOAD_WARMUP_SECS` (default 1, once per variant before the first round);
//! `ZSP_LOAD_GEN=wrk` drives the same servers and rounds with wrk (`-t1`, same connections)
//! instead of the built-in generator, as the issue's reference figures were taken; see
//! `src/wrk.rs` for how it sends (6)'s and (13)'s fresh requests.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zsp::core::testing::TestIssuer;
use zsp_loadbench::cpu::{children_cpu_time, cpu_time};
use zsp_loadbench::paired::{Paired, Slot, pair_by_time, schedule};
use zsp_loadbench::wrk;

const ISS: &str = "https://bench.issuer";
const AUD: &str = "bench-api";
const SCOPE: &str = "hello:read";
const TOKEN_TTL: u64 = 300;
const SIG_CACHE_ENTRIES: usize = 10_000;

const ROLE: &str = "ZSP_LOAD_ROLE";
const VARIANT: &str = "ZSP_LOAD_VARIANT";
const JWKS: &str = "ZSP_LOAD_JWKS";
const REDIS_URL: &str = "ZSP_REDIS_URL";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    NoAuth = 1,
    Jsonwebtoken = 2,
    JwtAuthorizer = 3,
    ZspEs256 = 4,
    ZspEdDsa = 5,
    ZspSingleUse = 6,
    ZspSigCache = 7,
    ZspSigCacheNoAudit = 8,
    ZspEs256JsonAudit = 9,
    ZspSigCacheJsonAudit = 10,
    ZspEs256AuditLayer = 11,
    ZspSigCacheAuditLayer = 12,
    ZspDpop = 13,
    ZspRedisReplay = 14,
    ZspSigCacheJsonAuditOuter = 15,
    ZspSigCacheNoSpan = 16,
    NoAuthTokenSent = 17,
}

impl Variant {
    const ALL: [Variant; 17] = [
        Variant::NoAuth,
        Variant::Jsonwebtoken,
        Variant::JwtAuthorizer,
        Variant::ZspEs256,
        Variant::ZspEdDsa,
        Variant::ZspSingleUse,
        Variant::ZspSigCache,
        Variant::ZspSigCacheNoAudit,
        Variant::ZspEs256JsonAudit,
        Variant::ZspSigCacheJsonAudit,
        Variant::ZspEs256AuditLayer,
        Variant::ZspSigCacheAuditLayer,
        Variant::ZspDpop,
        Variant::ZspRedisReplay,
        Variant::ZspSigCacheJsonAuditOuter,
        Variant::ZspSigCacheNoSpan,
        Variant::NoAuthTokenSent,
    ];

    fn id(self) -> usize {
        self as usize
    }

    fn from_id(id: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.id() == id)
    }

    fn name(self) -> &'static str {
        match self {
            Variant::NoAuth => "no auth",
            Variant::Jsonwebtoken => "hand-written jsonwebtoken 11 layer (ES256)",
            Variant::JwtAuthorizer => "jwt-authorizer 0.15 (ES256)",
            Variant::ZspEs256 => "zsp ES256, scope rule, audit on",
            Variant::ZspEdDsa => "zsp EdDSA, scope rule, audit on",
            Variant::ZspSingleUse => "zsp ES256 single-use + memory replay",
            Variant::ZspSigCache => "zsp ES256 + signature cache, reused token",
            Variant::ZspSigCacheNoAudit => "extra: (7) with audit off",
            Variant::ZspEs256JsonAudit => "extra: (4) with audit to JsonLinesAudit",
            Variant::ZspSigCacheJsonAudit => "extra: (7) with audit to JsonLinesAudit",
            Variant::ZspEs256AuditLayer => "extra: (4), audit through tracing to JsonAuditLayer",
            Variant::ZspSigCacheAuditLayer => "extra: (7), audit through tracing to JsonAuditLayer",
            Variant::ZspDpop => "extra: (4) with DPoP required, a fresh proof per request",
            Variant::ZspRedisReplay => "extra: (6) with the replay guard in Redis",
            Variant::ZspSigCacheJsonAuditOuter => "extra: (10), layer around the Router, not Router::layer",
            Variant::ZspSigCacheNoSpan => "extra: (7) with zsp::verify at WARN: no request span",
            Variant::NoAuthTokenSent => "extra: (1) sent (7)'s request, token ignored",
        }
    }

    /// Every request a fresh single-use token, its jti recorded by a replay guard.
    fn single_use(self) -> bool {
        matches!(self, Variant::ZspSingleUse | Variant::ZspRedisReplay)
    }

    fn eddsa(self) -> bool {
        self == Variant::ZspEdDsa
    }

    /// Whether the server's tracing subscriber is zsp's JSON audit layer instead of `fmt`.
    fn audit_layer(self) -> bool {
        matches!(self, Variant::ZspEs256AuditLayer | Variant::ZspSigCacheAuditLayer)
    }
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("server") => server_main(),
        Ok("client") => client_main(),
        _ => launcher_main(),
    }
}

// ------------------------------------------------------------------------------------------
// Launcher: re-execute as the pinned load generator.

fn taskset_available() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn launcher_main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench targets without `--bench`: do nothing there.
        println!(
            "load bench: run it with `cargo bench --manifest-path loadbench/Cargo.toml` (skipped outside cargo bench)"
        );
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let client_cpu = env_num("ZSP_LOAD_CLIENT_CPU", 1usize);
    let status = if taskset_available() && cpus >= 2 {
        Command::new("taskset")
            .arg("-c")
            .arg(client_cpu.to_string())
            .arg(&exe)
            .args(&args)
            .env(ROLE, "client")
            .status()
    } else {
        eprintln!("warning: taskset missing or fewer than 2 CPUs: running without CPU pinning");
        Command::new(&exe)
            .args(&args)
            .env(ROLE, "client")
            .env("ZSP_LOAD_NO_PIN", "1")
            .status()
    }
    .expect("start the load generator");
    std::process::exit(status.code().unwrap_or(1));
}

// ------------------------------------------------------------------------------------------
// Servers.

#[derive(Clone)]
struct JwtState {
    key: Arc<jsonwebtoken::DecodingKey>,
    validation: Arc<jsonwebtoken::Validation>,
}

#[derive(Clone, serde::Deserialize)]
#[allow(dead_code)]
struct HandClaims {
    sub: String,
    exp: u64,
    scope: String,
}

/// The minimal middleware a user would write with jsonwebtoken: Bearer → decode → extension.
async fn jsonwebtoken_mw(
    axum::extract::State(s): axum::extract::State<JwtState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let token = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return http::StatusCode::UNAUTHORIZED.into_response();
    };
    match jsonwebtoken::decode::<HandClaims>(token, &s.key, &s.validation) {
        Ok(data) => {
            req.extensions_mut().insert(data.claims);
            next.run(req).await
        }
        Err(_) => http::StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// jwt-authorizer is built on axum 0.7: its service needs an inner response type it can build
/// from its `AuthError`. This newtype carries axum 0.8's response through unchanged.
struct JaResponse(axum::response::Response);

impl From<jwt_authorizer::AuthError> for JaResponse {
    fn from(e: jwt_authorizer::AuthError) -> Self {
        use axum07::response::IntoResponse;
        JaResponse(e.into_response().map(axum::body::Body::new))
    }
}

fn audit_subscriber(variant: Variant) {
    use tracing_subscriber::{filter::Targets, fmt, prelude::*};
    if variant.audit_layer() {
        // zsp's own layer for the audit target only (so the zsp::verify request span is not
        // opened), writing to the same nowhere.
        let layer = zsp::core::JsonAuditLayer::new(std::io::sink())
            .with_filter(Targets::new().with_target("zsp::audit", tracing::Level::INFO));
        tracing_subscriber::registry().with(layer).init();
        return;
    }
    // The request span is an INFO span: (16) keeps zsp::verify at WARN (its warnings, no span),
    // as the inbound layer's docs suggest to those who would rather not pay for the span.
    let verify_level = if variant == Variant::ZspSigCacheNoSpan {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    };
    let audit = fmt::layer()
        .with_ansi(false)
        .with_writer(std::io::sink)
        .with_filter(
            Targets::new()
                .with_target("zsp::audit", tracing::Level::INFO)
                .with_target("zsp::verify", verify_level),
        );
    tracing_subscriber::registry().with(audit).init();
}

fn zsp_layer(variant: Variant, jwks: &[u8]) -> zsp::tower::VerifyLayer {
    use zsp::core::{Algorithm, KeySet, MemoryReplayGuard, Policy, RouteRule, Verifier};
    let alg = if variant.eddsa() {
        Algorithm::EdDSA
    } else {
        Algorithm::ES256
    };
    let mut rule = RouteRule::get("/hello").all_of([SCOPE]);
    if variant.single_use() {
        rule = rule.single_use();
    }
    let policy = Policy::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([alg])
        .route(rule)
        .build()
        .expect("policy");
    let keys = KeySet::from_jwks(jwks, None).expect("jwks");
    let mut builder = Verifier::builder(policy, keys);
    if variant == Variant::ZspSingleUse {
        builder = builder.replay_guard(Arc::new(MemoryReplayGuard::new(4_000_000)));
    }
    if variant == Variant::ZspRedisReplay {
        // The generator runs (14) only with ZSP_REDIS_URL set; a prefix of this process's own
        // keeps its keys apart from any other run's. Redis runs unpinned, beside both.
        let url = std::env::var(REDIS_URL).expect("ZSP_REDIS_URL");
        let store = zsp::core::redis::RedisStore::builder(url)
            .prefix(format!("zsp-load-{}:", std::process::id()))
            .build()
            .expect("redis store");
        builder = builder.replay_guard(Arc::new(store.replay_guard()));
    }
    // The cache is on by default; (4)–(6) measure the signature check itself.
    builder = builder.signature_cache(match variant {
        Variant::ZspSigCache
        | Variant::ZspSigCacheNoAudit
        | Variant::ZspSigCacheJsonAudit
        | Variant::ZspSigCacheJsonAuditOuter
        | Variant::ZspSigCacheNoSpan
        | Variant::ZspSigCacheAuditLayer => SIG_CACHE_ENTRIES,
        _ => 0,
    });
    if matches!(
        variant,
        Variant::ZspEs256JsonAudit | Variant::ZspSigCacheJsonAudit | Variant::ZspSigCacheJsonAuditOuter
    ) {
        // Same destination as the tracing variants' fmt layer: formatted, then written nowhere.
        builder = builder.audit_sink(Arc::new(zsp::core::JsonLinesAudit::new(std::io::sink())));
    }
    if variant == Variant::ZspSigCacheNoAudit {
        builder = builder.audit(false);
    }
    let mut layer = zsp::axum::extract::verify_layer(builder.build());
    if variant == Variant::ZspDpop {
        // Proofs must be fresh (their jti is recorded in the verifier's own memory replay
        // guard) and bound to the token's key; the htu is `http://` + Host + path.
        let dpop = zsp::core::DpopVerifier::builder()
            .mode(zsp::core::dpop::DpopMode::Required)
            .build()
            .expect("dpop verifier");
        layer = layer.dpop(dpop);
    }
    layer
}

/// What a server serves: a Router (with any layer inside it, through `Router::layer`), or
/// (15) the Router inside zsp's layer.
enum App {
    Router(Router),
    Outer(zsp::tower::VerifyService<Router>),
}

async fn build_app(variant: Variant, jwks_path: &Path) -> App {
    use tower::Layer as _;
    let hello = Router::new().route("/hello", get(|| async { "hello" }));
    let jwks = std::fs::read(jwks_path).expect("read jwks");
    App::Router(match variant {
        Variant::NoAuth | Variant::NoAuthTokenSent => hello,
        Variant::Jsonwebtoken => {
            let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&jwks).expect("jwks");
            let key = jsonwebtoken::DecodingKey::from_jwk(&set.keys[0]).expect("key");
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
            validation.set_issuer(&[ISS]);
            validation.set_audience(&[AUD]);
            validation.leeway = 10;
            let state = JwtState {
                key: Arc::new(key),
                validation: Arc::new(validation),
            };
            hello.layer(axum::middleware::from_fn_with_state(state, jsonwebtoken_mw))
        }
        Variant::JwtAuthorizer => {
            use jwt_authorizer::{IntoLayer, JwtAuthorizer, RegisteredClaims, Validation};
            // Algorithms: from the JWK's `alg` (ES256), as jwt-authorizer does by default.
            let validation = Validation::new().iss(&[ISS]).aud(&[AUD]).leeway(10);
            let auth: jwt_authorizer::Authorizer<RegisteredClaims> =
                JwtAuthorizer::from_jwks(jwks_path.to_str().expect("utf-8 path"))
                    .validation(validation)
                    .build()
                    .await
                    .expect("jwt-authorizer");
            let layer = auth.into_layer();
            let adapter = tower::layer::layer_fn(move |inner| {
                tower::ServiceBuilder::new()
                    .map_response(|r: JaResponse| r.0)
                    .layer(layer.clone())
                    .map_response(JaResponse)
                    .service(inner)
            });
            hello.layer(adapter)
        }
        // The layer sees every request before routing, as a gateway filter does; zsp's own
        // route rules decide, so nothing of axum's routing is needed first.
        Variant::ZspSigCacheJsonAuditOuter => return App::Outer(zsp_layer(variant, &jwks).layer(hello)),
        _ => hello.layer(zsp_layer(variant, &jwks)),
    })
}

fn server_main() {
    zsp::core::crypto::ensure_provider();
    let variant = Variant::from_id(env_num(VARIANT, 0)).expect("ZSP_LOAD_VARIANT");
    audit_subscriber(variant);
    let jwks = PathBuf::from(std::env::var_os(JWKS).expect("ZSP_LOAD_JWKS"));
    // What `#[tokio::main]` gives on a process pinned to one core: one worker thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        use axum::serve::ListenerExt;
        let app = build_app(variant, &jwks).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        println!("LISTENING {addr}");
        std::io::stdout().flush().expect("stdout");
        // Exit when the generator goes away (it holds our stdin).
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        match app {
            App::Router(router) => axum::serve(listener, router).await,
            App::Outer(svc) => {
                use axum::ServiceExt;
                axum::serve(
                    listener,
                    ServiceExt::<axum::extract::Request>::into_make_service(svc),
                )
                .await
            }
        }
        .expect("serve");
    });
}

// ------------------------------------------------------------------------------------------
// Load generator.

struct Server {
    variant: Variant,
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing its stdin lets the server exit by itself (a profiler it runs under then
        // writes its data); killed if it has not after a while.
        drop(self.child.stdin.take());
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(variant: Variant, jwks: &Path, pin: Option<usize>) -> Server {
    let exe = std::env::current_exe().expect("current exe");
    // ZSP_LOAD_SERVER_WRAP: a command the server runs under, e.g. a profiler
    // ("valgrind --tool=callgrind"); split on spaces.
    let wrap = std::env::var("ZSP_LOAD_SERVER_WRAP").unwrap_or_default();
    let mut argv: Vec<std::ffi::OsString> = wrap.split_whitespace().map(Into::into).collect();
    argv.push(exe.into());
    if let Some(cpu) = pin {
        argv.splice(0..0, ["taskset".into(), "-c".into(), cpu.to_string().into()]);
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let mut child = cmd
        .env(ROLE, "server")
        .env(VARIANT, variant.id().to_string())
        .env(JWKS, jwks)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("server line");
    let addr = line
        .trim()
        .strip_prefix("LISTENING ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("server {} did not start: {line:?}", variant.id()));
    println!("server ({}) pid {} on {addr}", variant.id(), child.id());
    Server { variant, child, addr }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// What each connection sends.
#[derive(Clone)]
enum Requests {
    /// The same request bytes every time.
    Fixed(Arc<[u8]>),
    /// A fresh request per request (a new token, or a new DPoP proof), taken from a shared
    /// pool; none is sent twice.
    Pool(Arc<RequestPool>),
}

struct RequestPool {
    requests: Vec<Vec<u8>>,
    next: AtomicUsize,
}

const PREFIX: &[u8] = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ";

/// What the DPoP proofs are for: `http://` + the Host header + the path.
const DPOP_HTU: &str = "http://127.0.0.1/hello";

fn dpop_request_bytes(token: &str, proof: Option<&str>) -> Vec<u8> {
    let mut r = format!("GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: DPoP {token}\r\n");
    if let Some(proof) = proof {
        r.push_str(&format!("DPoP: {proof}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

fn request_bytes(token: Option<&str>) -> Vec<u8> {
    match token {
        Some(t) => [PREFIX, t.as_bytes(), b"\r\n\r\n"].concat(),
        None => b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
    }
}

#[derive(Default)]
struct ConnResult {
    ok: u64,
    bad_status: u64,
    io_errors: u64,
    exhausted: bool,
    latencies_ns: Vec<u32>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1.1 response (Content-Length framed) from `stream`; returns its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = &buf[..end];
            let status = std::str::from_utf8(head.get(9..12).ok_or_else(|| bad("short status line"))?)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .ok_or_else(|| bad("status"))?;
            let lower = head.to_ascii_lowercase();
            let len = find(&lower, b"content-length:")
                .map(|i| {
                    let v = &lower[i + 15..];
                    let v = &v[..find(v, b"\r\n").unwrap_or(v.len())];
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.trim().parse::<usize>().ok())
                        .unwrap_or(0)
                })
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                read_more(stream, buf).await?;
            }
            buf.drain(..total);
            return Ok(status);
        }
        read_more(stream, buf).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

async fn connection(
    addr: SocketAddr,
    requests: Requests,
    deadline: Instant,
    expect_per_conn: usize,
) -> ConnResult {
    let mut res = ConnResult {
        latencies_ns: Vec::with_capacity(expect_per_conn),
        ..ConnResult::default()
    };
    let mut stream = match connect(addr).await {
        Ok(s) => s,
        Err(_) => {
            res.io_errors += 1;
            return res;
        }
    };
    let mut buf = Vec::with_capacity(4096);
    loop {
        let bytes: &[u8] = match &requests {
            Requests::Fixed(b) => b,
            Requests::Pool(p) => {
                let i = p.next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = p.requests.get(i) else {
                    res.exhausted = true;
                    break;
                };
                r
            }
        };
        let start = Instant::now();
        let outcome = async {
            stream.write_all(bytes).await?;
            read_response(&mut stream, &mut buf).await
        }
        .await;
        let now = Instant::now();
        match outcome {
            Ok(200) => {
                res.ok += 1;
                res.latencies_ns
                    .push(u32::try_from((now - start).as_nanos()).unwrap_or(u32::MAX));
            }
            Ok(_) => res.bad_status += 1,
            Err(_) => {
                res.io_errors += 1;
                buf.clear();
                match connect(addr).await {
                    Ok(s) => stream = s,
                    Err(_) => break,
                }
            }
        }
        if now >= deadline {
            break;
        }
    }
    res
}

struct Round {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    server_cpu_us_per_req: f64,
    server_busy: f64,
    client_busy: f64,
    errors: u64,
    exhausted: bool,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1_000.0
}

async fn run_round(server: &Server, requests: Requests, conns: usize, secs: f64, tick_hz: f64) -> Round {
    let pid = server.child.id().to_string();
    let cpu0 = cpu_time(&pid, tick_hz);
    let me0 = cpu_time("self", tick_hz);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let expect = (secs * 150_000.0 / conns as f64) as usize + 16;
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(connection(server.addr, requests.clone(), deadline, expect)))
        .collect();
    let mut all = ConnResult::default();
    for t in tasks {
        let r = t.await.expect("connection task");
        all.ok += r.ok;
        all.bad_status += r.bad_status;
        all.io_errors += r.io_errors;
        all.exhausted |= r.exhausted;
        all.latencies_ns.extend(r.latencies_ns);
    }
    let elapsed = start.elapsed();
    let cpu = cpu_time(&pid, tick_hz).saturating_sub(cpu0);
    let me = cpu_time("self", tick_hz).saturating_sub(me0);
    all.latencies_ns.sort_unstable();
    let secs = elapsed.as_secs_f64();
    Round {
        rps: all.ok as f64 / secs,
        p50_us: percentile(&all.latencies_ns, 0.50),
        p99_us: percentile(&all.latencies_ns, 0.99),
        server_cpu_us_per_req: cpu.as_secs_f64() * 1e6 / (all.ok.max(1) as f64),
        server_busy: cpu.as_secs_f64() / secs,
        client_busy: me.as_secs_f64() / secs,
        errors: all.bad_status + all.io_errors,
        exhausted: all.exhausted,
    }
}

/// One round against `server` with wrk. `dir` holds the script and the pool file.
fn run_round_wrk(
    server: &Server,
    requests: &Requests,
    conns: usize,
    secs: f64,
    tick_hz: f64,
    dir: &Path,
) -> Round {
    let url = format!("http://{}/hello", server.addr);
    let mut cmd = Command::new("wrk");
    cmd.arg("-t1")
        .arg(format!("-c{conns}"))
        // Whole seconds (the caller rounded them).
        .arg(format!("-d{}s", secs as u64))
        .arg("--latency");
    let pool_len = match requests {
        Requests::Fixed(bytes) => {
            if let Some(value) = wrk::authorization(bytes) {
                cmd.arg("-H").arg(format!("Authorization: {value}"));
            }
            None
        }
        Requests::Pool(pool) => {
            let script = dir.join("pool.lua");
            let file = dir.join(format!("pool-{}.txt", server.variant.id()));
            std::fs::write(&script, wrk::SCRIPT).expect("write wrk script");
            std::fs::write(&file, pool.requests.concat()).expect("write request pool");
            cmd.arg("-s").arg(script);
            Some((pool.requests.len(), file))
        }
    };
    cmd.arg(&url);
    if let Some((_, file)) = &pool_len {
        cmd.arg("--").arg(file);
    }

    let pid = server.child.id().to_string();
    let cpu0 = cpu_time(&pid, tick_hz);
    let children0 = children_cpu_time(tick_hz);
    let out = cmd.output().expect("run wrk");
    let cpu = cpu_time(&pid, tick_hz).saturating_sub(cpu0);
    let wrk_cpu = children_cpu_time(tick_hz).saturating_sub(children0);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        panic!(
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report = wrk::Report::parse(&text).unwrap_or_else(|| panic!("cannot read wrk's report:\n{text}"));
    let ok = report.requests.saturating_sub(report.non_2xx);
    let secs = report.duration.as_secs_f64();
    if let Some((_, file)) = &pool_len {
        let _ = std::fs::remove_file(file);
    }
    Round {
        rps: ok as f64 / secs,
        p50_us: report.p50_us,
        p99_us: report.p99_us,
        server_cpu_us_per_req: cpu.as_secs_f64() * 1e6 / (ok.max(1) as f64),
        server_busy: cpu.as_secs_f64() / secs,
        client_busy: wrk_cpu.as_secs_f64() / secs,
        errors: report.non_2xx + report.socket_errors,
        exhausted: pool_len.is_some_and(|(n, _)| report.requests > n as u64),
    }
}

/// Sends one request and returns its status.
async fn status_of(addr: SocketAddr, token: Option<&str>) -> u16 {
    status_of_bytes(addr, &request_bytes(token)).await
}

async fn status_of_bytes(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut stream = connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    read_response(&mut stream, &mut Vec::new())
        .await
        .expect("response")
}

/// Every authenticating variant must accept the good token and refuse no token, a token for
/// another audience, from another issuer, expired, or signed by another key: the comparison is
/// between verifiers that check the same things.
async fn preflight(server: &Server, tokens: &Tokens) {
    let v = server.variant;
    let good = tokens.mint(v);
    let good_request = match v {
        Variant::ZspDpop => dpop_request_bytes(&good, Some(&tokens.proof(&good))),
        _ => request_bytes(Some(&good)),
    };
    assert_eq!(
        status_of_bytes(server.addr, &good_request).await,
        200,
        "({}) good token",
        v.id()
    );
    if v == Variant::ZspDpop {
        // The bound token as a bearer token, without a proof, with a replayed proof, and with
        // a proof by another key.
        let other = zsp::core::DpopKey::generate().expect("dpop key");
        let foreign = other
            .proof(&http::Method::GET, DPOP_HTU, Some(&good), None)
            .expect("proof");
        for (what, request) in [
            ("as Bearer", request_bytes(Some(&good))),
            ("no proof", dpop_request_bytes(&good, None)),
            ("replayed proof", good_request.clone()),
            ("another key's proof", dpop_request_bytes(&good, Some(&foreign))),
        ] {
            let status = status_of_bytes(server.addr, &request).await;
            assert!(status == 400 || status == 401, "(13) {what}: {status}");
        }
    }
    if matches!(v, Variant::NoAuth | Variant::NoAuthTokenSent) {
        return;
    }
    let issuer = tokens.issuer(v);
    let other_key = if v.eddsa() {
        TestIssuer::ed25519(ISS)
    } else {
        TestIssuer::es256(ISS)
    };
    let now = issuer.minter().now();
    let bad = [
        ("no token", None),
        (
            "wrong audience",
            Some(issuer.token("other-api", &[SCOPE]).mint().expect("mint")),
        ),
        (
            "wrong issuer",
            Some(
                TestIssuer::from_key("https://evil.issuer", issuer.key().clone())
                    .token(AUD, &[SCOPE])
                    .mint()
                    .expect("mint"),
            ),
        ),
        (
            "expired",
            Some(
                issuer
                    .token(AUD, &[SCOPE])
                    .issued_at(now - 600)
                    .ttl_secs(60)
                    .mint()
                    .expect("mint"),
            ),
        ),
        (
            "other key, same kid",
            Some(zsp::core::testing::sign_raw_with(
                other_key.key(),
                &serde_json::json!({"alg": if v.eddsa() { "EdDSA" } else { "ES256" }, "kid": issuer.key().kid(), "typ": "at+jwt"}),
                &serde_json::json!({"iss": ISS, "aud": AUD, "sub": "x", "iat": now, "exp": now + 60, "jti": "j", "scope": SCOPE}),
            )),
        ),
    ];
    for (what, token) in bad {
        let status = status_of(server.addr, token.as_deref()).await;
        assert!(status == 401 || status == 403, "({}) {what}: {status}", v.id());
    }
    if v.single_use() {
        assert_eq!(
            status_of(server.addr, Some(&good)).await,
            401,
            "({}) replayed token",
            v.id()
        );
    }
}

struct Tokens {
    es256: TestIssuer,
    ed25519: TestIssuer,
    /// The client key DPoP tokens are bound to.
    dpop: zsp::core::DpopKey,
}

impl Tokens {
    fn issuer(&self, v: Variant) -> &TestIssuer {
        if v.eddsa() { &self.ed25519 } else { &self.es256 }
    }

    fn mint(&self, v: Variant) -> String {
        let mut token = self
            .issuer(v)
            .token(AUD, &[SCOPE])
            .subject("svc-load")
            .client_id("load")
            .ttl_secs(TOKEN_TTL);
        if v == Variant::ZspDpop {
            token = token.jkt(self.dpop.thumbprint().as_str());
        }
        token.mint().expect("mint")
    }

    fn proof(&self, token: &str) -> String {
        self.dpop
            .proof(&http::Method::GET, DPOP_HTU, Some(token), None)
            .expect("proof")
    }

    /// One good request of variant `v`.
    fn good_request(&self, v: Variant) -> Vec<u8> {
        let token = self.mint(v);
        match v {
            Variant::NoAuth => request_bytes(None),
            Variant::ZspDpop => dpop_request_bytes(&token, Some(&self.proof(&token))),
            _ => request_bytes(Some(&token)),
        }
    }

    fn requests(&self, v: Variant, pool_size: usize) -> Requests {
        let pool = |requests| {
            Requests::Pool(Arc::new(RequestPool {
                requests,
                next: AtomicUsize::new(0),
            }))
        };
        match v {
            Variant::ZspSingleUse | Variant::ZspRedisReplay => {
                pool((0..pool_size).map(|_| self.good_request(v)).collect())
            }
            Variant::ZspDpop => {
                let token = self.mint(v);
                pool(
                    (0..pool_size)
                        .map(|_| dpop_request_bytes(&token, Some(&self.proof(&token))))
                        .collect(),
                )
            }
            _ => Requests::Fixed(self.good_request(v).into()),
        }
    }
}

fn write_jwks(dir: &Path, name: &str, issuer: &TestIssuer) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(&issuer.jwks()).expect("jwks json")).expect("write jwks");
    path
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn client_main() {
    zsp::core::crypto::ensure_provider();
    let pinned = std::env::var_os("ZSP_LOAD_NO_PIN").is_none();
    let server_cpu = env_num("ZSP_LOAD_SERVER_CPU", 0usize);
    let client_cpu = env_num("ZSP_LOAD_CLIENT_CPU", 1usize);
    let secs: f64 = env_num("ZSP_LOAD_SECS", 3.0);
    let warmup: f64 = env_num("ZSP_LOAD_WARMUP_SECS", 1.0);
    let rounds: usize = env_num("ZSP_LOAD_ROUNDS", 5);
    let conns: usize = env_num("ZSP_LOAD_CONNS", 32);
    let single_use_rate: f64 = env_num("ZSP_LOAD_SINGLE_USE_RATE", 25_000.0);
    // Above what one core verifies with two signature checks per request.
    let dpop_rate: f64 = env_num("ZSP_LOAD_DPOP_RATE", 10_000.0);
    let variants: Vec<Variant> = match std::env::var("ZSP_LOAD_VARIANTS") {
        Ok(list) => list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .filter_map(Variant::from_id)
            .collect(),
        Err(_) => Variant::ALL.to_vec(),
    };
    // (14) needs a Redis; without ZSP_REDIS_URL it is left out, and says so.
    let redis = std::env::var_os(REDIS_URL).is_some();
    if !redis && variants.contains(&Variant::ZspRedisReplay) {
        println!("(14) skipped: set ZSP_REDIS_URL (e.g. redis://127.0.0.1:6379/) to run it");
    }
    let variants: Vec<Variant> = variants
        .into_iter()
        .filter(|&v| redis || v != Variant::ZspRedisReplay)
        .collect();
    // The generator: the built-in one (default) or wrk, for a second opinion.
    let wrk_version = match std::env::var("ZSP_LOAD_GEN").as_deref() {
        Err(_) | Ok("builtin") => None,
        Ok("wrk") => match wrk::version() {
            Some(v) => Some(v),
            None => {
                eprintln!("ZSP_LOAD_GEN=wrk, but wrk is not on PATH (Debian: apt-get install wrk)");
                std::process::exit(2);
            }
        },
        Ok(other) => {
            eprintln!("ZSP_LOAD_GEN={other}: expected `builtin` or `wrk`");
            std::process::exit(2);
        }
    };
    let generator = wrk_version
        .clone()
        .unwrap_or_else(|| "the built-in generator".into());
    // wrk runs whole seconds: round here, so the token and proof pools match the rounds.
    let whole = |s: f64| if s > 0.0 { s.round().max(1.0) } else { 0.0 };
    let (secs, warmup) = match wrk_version {
        Some(_) => (whole(secs), whole(warmup)),
        None => (secs, warmup),
    };
    let tick_hz = clock_ticks();
    println!("load average at start: {}", loadavg());

    let dir = std::env::temp_dir().join(format!("zsp-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tokens = Tokens {
        es256: TestIssuer::es256(ISS),
        ed25519: TestIssuer::ed25519(ISS),
        dpop: zsp::core::DpopKey::generate().expect("dpop key"),
    };
    let es_jwks = write_jwks(&dir, "es256.jwks.json", &tokens.es256);
    let ed_jwks = write_jwks(&dir, "ed25519.jwks.json", &tokens.ed25519);

    // ZSP_LOAD_ANCHORS=0: one slot per variant and round, (1) included: the schedule before anchors.
    let anchor = std::env::var("ZSP_LOAD_ANCHORS")
        .map_or(true, |v| v != "0")
        .then(|| variants.iter().position(|&v| v == Variant::NoAuth))
        .flatten();
    let anchored: Vec<bool> = variants
        .iter()
        .map(|&v| {
            TARGETS.iter().any(|t| t.1 == v && t.3 == Variant::NoAuth)
                || REFERENCES.iter().any(|t| t.1 == v && t.3 == Variant::NoAuth)
        })
        .collect();
    println!(
        "zsp load bench: {} variants × {rounds} rounds × {secs} s ({} slots a round), {conns} \
         keep-alive connections, warm-up {warmup} s, load from {generator}; server CPU {}, \
         generator CPU {}",
        variants.len(),
        schedule(variants.len(), anchor, &anchored, 0).len(),
        if pinned {
            server_cpu.to_string()
        } else {
            "unpinned".into()
        },
        if pinned {
            client_cpu.to_string()
        } else {
            "unpinned".into()
        },
    );
    let servers: Vec<Server> = variants
        .iter()
        .map(|&v| {
            let jwks = if v.eddsa() { &ed_jwks } else { &es_jwks };
            spawn_server(v, jwks, pinned.then_some(server_cpu))
        })
        .collect();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pool_size = |v: Variant, s: f64| {
        let rate = match v {
            Variant::ZspSingleUse | Variant::ZspRedisReplay => single_use_rate,
            Variant::ZspDpop => dpop_rate,
            _ => 0.0,
        };
        (rate * s).ceil() as usize + conns
    };
    // Share of each slot's time the hypervisor took from the server's CPU (pinned runs only).
    let mut server_steal: Vec<f64> = Vec::new();
    let (slots, measured): (Vec<Slot>, Vec<Round>) = rt.block_on(async {
        for s in &servers {
            preflight(s, &tokens).await;
        }
        if warmup > 0.0 {
            for s in &servers {
                let req = tokens.requests(s.variant, pool_size(s.variant, warmup));
                let r = match wrk_version {
                    Some(_) => run_round_wrk(s, &req, conns, warmup, tick_hz, &dir),
                    None => run_round(s, req, conns, warmup, tick_hz).await,
                };
                if r.errors > 0 {
                    eprintln!("warning: warm-up of ({}) had {} errors", s.variant.id(), r.errors);
                }
            }
        }
        let mut slots = Vec::new();
        let mut measured = Vec::new();
        for round in 0..rounds {
            for (pos, i) in schedule(servers.len(), anchor, &anchored, round).into_iter().enumerate() {
                let s = &servers[i];
                let req = tokens.requests(s.variant, pool_size(s.variant, secs));
                let stolen_before = steal(pinned, server_cpu, client_cpu, tick_hz);
                let started = Instant::now();
                let r = match wrk_version {
                    Some(_) => run_round_wrk(s, &req, conns, secs, tick_hz, &dir),
                    None => run_round(s, req, conns, secs, tick_hz).await,
                };
                let stolen = steal_share(
                    stolen_before,
                    steal(pinned, server_cpu, client_cpu, tick_hz),
                    started.elapsed(),
                );
                println!(
                    "round {} ({}) {:>9.0} req/s  p50 {:>8.1} µs  p99 {:>8.1} µs  server {:>5.1} µs CPU/req, \
                     busy {:>3.0} %  generator busy {:>3.0} %{}{}{}",
                    round + 1,
                    s.variant.id(),
                    r.rps,
                    r.p50_us,
                    r.p99_us,
                    r.server_cpu_us_per_req,
                    r.server_busy * 100.0,
                    r.client_busy * 100.0,
                    if r.errors > 0 {
                        format!("  ERRORS {}", r.errors)
                    } else {
                        String::new()
                    },
                    if r.exhausted {
                        "  (request pool used up before the round ended: raise ZSP_LOAD_SINGLE_USE_RATE or ZSP_LOAD_DPOP_RATE)"
                    } else {
                        ""
                    },
                    stolen.map_or(String::new(), |(server, generator)| format!(
                        "  steal {:>2.0} % / {:>2.0} %",
                        server * 100.0,
                        generator * 100.0
                    )),
                );
                if let Some((server, _)) = stolen {
                    server_steal.push(server);
                }
                slots.push(Slot { variant: i, round, pos });
                measured.push(r);
            }
        }
        (slots, measured)
    });
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);

    println!("load average at end: {}", loadavg());
    if !server_steal.is_empty() {
        server_steal.sort_by(f64::total_cmp);
        let busy = server_steal.iter().filter(|&&x| x > 0.05).count();
        println!(
            "time stolen by the hypervisor from the server's CPU (/proc/stat): median {:.1} %, \
             most {:.1} % of a slot; {busy} of {} slots above 5 % (their figures measure the \
             host's neighbours too)",
            server_steal[server_steal.len() / 2] * 100.0,
            server_steal[server_steal.len() - 1] * 100.0,
            server_steal.len(),
        );
    }
    let anchors_ran = anchor.is_some() && anchored.iter().any(|&a| a);
    report(
        &variants,
        &slots,
        &measured,
        rounds,
        secs,
        conns,
        anchors_ran,
        &generator,
    );
}

/// The issue's throughput targets, for (4) and (7) and for the extras that change only how the
/// audit record is written: (name, variant, name and variant it is judged against, floor).
/// Each variant judged against (1) gets its own anchor slots of (1) beside it
/// (`zsp_loadbench::paired::schedule`).
const TARGETS: [(&str, Variant, &str, Variant, f64); 12] = [
    (
        "zsp ES256 (4)",
        Variant::ZspEs256,
        "jwt-authorizer (3)",
        Variant::JwtAuthorizer,
        1.06,
    ),
    (
        "zsp ES256 (4)",
        Variant::ZspEs256,
        "no auth (1)",
        Variant::NoAuth,
        0.115,
    ),
    (
        "zsp signature cache (7)",
        Variant::ZspSigCache,
        "no auth (1)",
        Variant::NoAuth,
        0.85,
    ),
    (
        "zsp signature cache, audit off (8)",
        Variant::ZspSigCacheNoAudit,
        "no auth (1)",
        Variant::NoAuth,
        0.85,
    ),
    (
        "zsp ES256, JSON-lines audit (9)",
        Variant::ZspEs256JsonAudit,
        "jwt-authorizer (3)",
        Variant::JwtAuthorizer,
        1.06,
    ),
    (
        "zsp ES256, JSON-lines audit (9)",
        Variant::ZspEs256JsonAudit,
        "no auth (1)",
        Variant::NoAuth,
        0.115,
    ),
    (
        "zsp signature cache, JSON-lines audit (10)",
        Variant::ZspSigCacheJsonAudit,
        "no auth (1)",
        Variant::NoAuth,
        0.85,
    ),
    (
        "zsp ES256, tracing to JsonAuditLayer (11)",
        Variant::ZspEs256AuditLayer,
        "jwt-authorizer (3)",
        Variant::JwtAuthorizer,
        1.06,
    ),
    (
        "zsp ES256, tracing to JsonAuditLayer (11)",
        Variant::ZspEs256AuditLayer,
        "no auth (1)",
        Variant::NoAuth,
        0.115,
    ),
    (
        "zsp signature cache, tracing to JsonAuditLayer (12)",
        Variant::ZspSigCacheAuditLayer,
        "no auth (1)",
        Variant::NoAuth,
        0.85,
    ),
    (
        "zsp signature cache, JSON-lines audit, layer around the Router (15)",
        Variant::ZspSigCacheJsonAuditOuter,
        "no auth (1)",
        Variant::NoAuth,
        0.85,
    ),
    (
        "zsp signature cache, fmt without the request span (16)",
        Variant::ZspSigCacheNoSpan,
        "no auth (1)",
        Variant::NoAuth,
        0.85,
    ),
];

/// Ratios printed for what they explain, with no target: (17) against (1) is what the token's
/// bytes cost before any middleware reads them, and the cached variants against (17) are what
/// zsp's layer costs beyond that. Variants compared with (1) here are anchored as the targets'.
const REFERENCES: [(&str, Variant, &str, Variant); 3] = [
    (
        "no auth, token sent (17)",
        Variant::NoAuthTokenSent,
        "no auth (1)",
        Variant::NoAuth,
    ),
    (
        "zsp signature cache, audit off (8)",
        Variant::ZspSigCacheNoAudit,
        "no auth, token sent (17)",
        Variant::NoAuthTokenSent,
    ),
    (
        "zsp signature cache, JSON-lines audit (10)",
        Variant::ZspSigCacheJsonAudit,
        "no auth, token sent (17)",
        Variant::NoAuthTokenSent,
    ),
];

/// Time stolen so far from the server's and the generator's CPUs, when both are pinned.
fn steal(pinned: bool, server_cpu: usize, client_cpu: usize, tick_hz: f64) -> Option<(Duration, Duration)> {
    if !pinned {
        return None;
    }
    Some((
        zsp_loadbench::cpu::steal_time(server_cpu, tick_hz)?,
        zsp_loadbench::cpu::steal_time(client_cpu, tick_hz)?,
    ))
}

/// The shares of `wall` stolen from each CPU between two readings of [`steal`].
fn steal_share(
    before: Option<(Duration, Duration)>,
    after: Option<(Duration, Duration)>,
    wall: Duration,
) -> Option<(f64, f64)> {
    let ((s0, g0), (s1, g1)) = (before?, after?);
    let wall = wall.as_secs_f64().max(f64::MIN_POSITIVE);
    Some((
        s1.saturating_sub(s0).as_secs_f64() / wall,
        g1.saturating_sub(g0).as_secs_f64() / wall,
    ))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

struct Summary {
    variant: Variant,
    rps: f64,
    p50: f64,
    p99: f64,
    cpu: f64,
    errors: u64,
}

#[allow(clippy::too_many_arguments)]
fn report(
    variants: &[Variant],
    slots: &[Slot],
    measured: &[Round],
    rounds: usize,
    secs: f64,
    conns: usize,
    anchored: bool,
    generator: &str,
) {
    let of = |i: usize| {
        slots
            .iter()
            .zip(measured)
            .filter(move |(s, _)| s.variant == i)
            .map(|(_, r)| r)
    };
    let sums: Vec<Summary> = variants
        .iter()
        .enumerate()
        .map(|(i, &variant)| (variant, of(i).collect::<Vec<_>>()))
        .map(|(variant, rs)| Summary {
            variant,
            rps: median(rs.iter().map(|r| r.rps).collect()),
            p50: median(rs.iter().map(|r| r.p50_us).collect()),
            p99: median(rs.iter().map(|r| r.p99_us).collect()),
            cpu: median(rs.iter().map(|r| r.server_cpu_us_per_req).collect()),
            errors: rs.iter().map(|r| r.errors).sum(),
        })
        .collect();
    let get = |v: Variant| sums.iter().find(|s| s.variant == v);
    let base = get(Variant::NoAuth);
    let ratio = |x: f64, b: Option<f64>| match b {
        Some(b) if b > 0.0 => format!("{:.3}×", x / b),
        _ => "–".into(),
    };
    println!();
    println!(
        "Medians of {rounds} interleaved rounds (order reversed every other round) of {secs} s, \
         {conns} connections, load from {generator}; ratios are of the medians, to (1) no auth.{}",
        if anchored {
            " (1) ran beside each variant judged against it (anchor slots): its figures are \
             medians over all of them, and those variants' targets pair each slot with the \
             (1) slots next to it."
        } else {
            ""
        }
    );
    println!();
    println!(
        "| variant | req/s | × (1) | p50 µs | × (1) | p99 µs | × (1) | server CPU µs/req | CPU capacity × (1) | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in &sums {
        println!(
            "| ({}) {} | {:.0} | {} | {:.0} | {} | {:.0} | {} | {:.1} | {} | {} |",
            s.variant.id(),
            s.variant.name(),
            s.rps,
            ratio(s.rps, base.map(|b| b.rps)),
            s.p50,
            ratio(s.p50, base.map(|b| b.p50)),
            s.p99,
            ratio(s.p99, base.map(|b| b.p99)),
            s.cpu,
            // Requests per server-CPU-second relative to (1): what req/s would be if the
            // server had its core to itself, whatever else ran on the machine.
            ratio(base.map(|b| b.cpu).unwrap_or(f64::NAN), Some(s.cpu)),
            s.errors,
        );
    }
    println!();
    println!("Targets (issue \"Benchmarks\"):");
    let index = |v: Variant| variants.iter().position(|&x| x == v);
    // Judged on the median of per-round ratios (see `zsp_loadbench::paired`); the ratio of the
    // two medians in the table above is printed beside it.
    let check = |name: &str,
                 a: Variant,
                 b: Variant,
                 f: fn(&Round) -> f64,
                 target: f64,
                 higher_better: bool| {
        let (Some(ia), Some(ib)) = (index(a), index(b)) else {
            println!("- {name}: not measured in this run");
            return;
        };
        let values: Vec<f64> = measured.iter().map(f).collect();
        let (xs, ys) = pair_by_time(slots, &values, ia, ib);
        let Some(p) = Paired::new(&xs, &ys, target, higher_better) else {
            println!("- {name}: no usable round");
            return;
        };
        let all = |i: usize| of(i).map(f).collect::<Vec<f64>>();
        let of_medians = median(all(ia)) / median(all(ib));
        println!(
            "- {name}: {:.3}× (per-round median; {:.3}–{:.3}, {} of {} rounds meet it; ratio of medians {of_medians:.3}×) \
             (target {} {target}×) — {}",
            p.median,
            p.min,
            p.max,
            p.met,
            p.rounds,
            if higher_better { "≥" } else { "≤" },
            if p.meets(target, higher_better) {
                "MET"
            } else {
                "NOT MET"
            }
        );
    };
    for (a_name, a, b_name, b, target) in TARGETS {
        check(
            &format!("{a_name} req/s vs {b_name}"),
            a,
            b,
            |r| r.rps,
            target,
            true,
        );
    }
    for (name, v) in [
        ("zsp ES256 (4)", Variant::ZspEs256),
        ("zsp ES256, JSON-lines audit (9)", Variant::ZspEs256JsonAudit),
        (
            "zsp ES256, tracing to JsonAuditLayer (11)",
            Variant::ZspEs256AuditLayer,
        ),
    ] {
        check(
            &format!("{name} p99 vs jwt-authorizer (3) p99"),
            v,
            Variant::JwtAuthorizer,
            |r| r.p99_us,
            1.0,
            false,
        );
    }
    // Requests per server-CPU-second, for the same targets measured by CPU cost.
    for (a_name, a, b_name, b, target) in TARGETS {
        check(
            &format!("by server CPU per request: {a_name} vs {b_name}"),
            a,
            b,
            |r| 1.0 / r.server_cpu_us_per_req,
            target,
            true,
        );
    }
    println!();
    println!("For reference (no target):");
    for (a_name, a, b_name, b) in REFERENCES {
        let (Some(ia), Some(ib)) = (index(a), index(b)) else {
            println!("- {a_name} vs {b_name}: not measured in this run");
            continue;
        };
        for (what, f) in [
            ("req/s", (|r: &Round| r.rps) as fn(&Round) -> f64),
            ("by server CPU per request", |r: &Round| {
                1.0 / r.server_cpu_us_per_req
            }),
        ] {
            let values: Vec<f64> = measured.iter().map(f).collect();
            let (xs, ys) = pair_by_time(slots, &values, ia, ib);
            match Paired::new(&xs, &ys, 1.0, true) {
                Some(p) => println!(
                    "- {a_name} vs {b_name}, {what}: {:.3}× (per-round median; {:.3}–{:.3} over {} rounds)",
                    p.median, p.min, p.max, p.rounds
                ),
                None => println!("- {a_name} vs {b_name}, {what}: no usable round"),
            }
        }
    }
}
