//! Standalone token broker.
//!
//! ```sh
//! ZSP_LISTEN=127.0.0.1:9000 ZSP_BROKER_POLICY=examples/broker-policy.toml cargo run --example broker
//! ```
//!
//! * `ZSP_BROKER_POLICY`: path of the TOML policy (default: the embedded demo policy,
//!   `examples/broker-policy.toml`).
//! * `ZSP_LISTEN`: listen address (default `127.0.0.1:9000`). The issuer is the policy's
//!   `issuer`, or `http://` + this address.
//!
//! Prints `listening on ADDR` on stdout once ready; logs and audit events go to stderr.

use std::net::SocketAddr;

use zsp::axum::broker::{Broker, BrokerConfigError, BrokerPolicy};

const DEMO_POLICY: &str = include_str!("broker-policy.toml");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(true)
        .init();
    let listen: SocketAddr = std::env::var("ZSP_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:9000".into())
        .parse()?;
    let text = match std::env::var("ZSP_BROKER_POLICY") {
        Ok(path) => std::fs::read_to_string(&path).map_err(|e| format!("ZSP_BROKER_POLICY {path}: {e}"))?,
        Err(_) => DEMO_POLICY.to_owned(),
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let policy = match BrokerPolicy::from_toml(&text) {
        Err(BrokerConfigError::MissingIssuer) => {
            BrokerPolicy::from_toml_with_issuer(&text, &format!("http://{addr}"))?
        }
        other => other?,
    };
    let broker = Broker::builder(policy).build()?;
    tracing::info!(issuer = broker.issuer(), kid = %broker.active_kid(), "broker ready");
    println!("listening on {addr}");
    axum::serve(listener, broker.router()).await?;
    Ok(())
}
