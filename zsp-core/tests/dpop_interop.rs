//! Interoperability with an independent JOSE implementation (Python jwcrypto).
//!
//! * `tests/fixtures/dpop/vectors.json` holds proofs jwcrypto made (see `make_vectors.py`
//!   beside it); zsp verifies each at the vector's fixed time and must agree with the expected
//!   outcome and with jwcrypto's RFC 7638 thumbprint.
//! * zsp's own proofs are handed to the same script, which verifies them with jwcrypto when
//!   Python and jwcrypto are installed (the test prints `skipped` otherwise).

use std::path::PathBuf;
use std::process::Command;

use http::Method;
use serde_json::{Value, json};
use zsp_core::dpop::{DpopKey, DpopVerifier, jwk_thumbprint};
use zsp_core::{Denial, keys::parse_alg};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dpop")
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(fixtures().join("vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn jwcrypto_proofs_verify_with_zsp_at_their_fixed_time() {
    let doc = vectors();
    let list = doc["vectors"].as_array().unwrap();
    assert!(list.len() >= 4);
    let mut failures = Vec::new();
    for v in list {
        let name = v["name"].as_str().unwrap();
        let algs: Vec<_> = v["algorithms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| parse_alg(a.as_str().unwrap()).unwrap())
            .collect();
        let verifier = DpopVerifier::builder().algorithms(algs).build().unwrap();
        let method = Method::from_bytes(v["method"].as_str().unwrap().as_bytes()).unwrap();
        let jkt = v["jkt"].as_str().unwrap();
        let got = verifier
            .verify(
                &[v["proof"].as_str().unwrap()],
                &method,
                v["htu"].as_str().unwrap(),
                v["access_token"].as_str(),
                Some(jkt),
                v["now"].as_u64().unwrap(),
            )
            .await;
        match (v["expect"].as_str().unwrap(), got) {
            ("accept", Ok(found)) if found == jkt => {}
            ("accept", other) => failures.push(format!("{name}: {other:?}, want Ok({jkt})")),
            (reason, Err(Denial::InvalidDpopProof(r))) if r == reason => {}
            (reason, other) => failures.push(format!("{name}: {other:?}, want deny {reason:?}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn rfc7638_thumbprints_agree_with_jwcrypto_and_the_rfc() {
    let doc = vectors();
    let list = doc["thumbprints"].as_array().unwrap();
    assert!(
        list.iter()
            .any(|t| t["name"] == "rfc7638_3_1" && t["jkt"] == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
    for t in list {
        assert_eq!(
            jwk_thumbprint(&t["jwk"]).unwrap(),
            t["jkt"].as_str().unwrap(),
            "{}",
            t["name"]
        );
    }
}

fn jwcrypto_available() -> bool {
    Command::new("python3")
        .args(["-c", "import jwcrypto"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `make_vectors.py verify` on one case; `None` when Python or jwcrypto is missing.
fn verify_with_jwcrypto(case: &Value) -> Option<Value> {
    if !jwcrypto_available() {
        return None;
    }
    let path = std::env::temp_dir().join(format!(
        "zsp-dpop-{}-{}.json",
        std::process::id(),
        zsp_core::crypto::random_id::<8>().unwrap()
    ));
    std::fs::write(&path, serde_json::to_vec(case).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(fixtures().join("make_vectors.py"))
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("script output: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.success(), result["ok"] == true);
    Some(result)
}

#[test]
fn zsp_proofs_verify_with_jwcrypto() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    for key in [
        DpopKey::generate_es256().unwrap(),
        DpopKey::generate_ed25519().unwrap(),
    ] {
        let url = "https://api.example/orders?page=2";
        let proof = key
            .proof_at(&Method::PUT, url, Some(token), Some("a-nonce"), now)
            .unwrap();
        let case = json!({
            "proof": proof, "method": "PUT", "htu": url, "access_token": token,
            "nonce": "a-nonce", "now": now, "jkt": key.thumbprint().as_str(),
        });
        let Some(result) = verify_with_jwcrypto(&case) else {
            println!("skipped: python3 with jwcrypto not available");
            return;
        };
        assert_eq!(result["ok"], true, "{:?}: {result}", key.algorithm());
        assert_eq!(result["jkt"], key.thumbprint().as_str());

        // The independent side refuses what it should: a proof for another method.
        let wrong = json!({"proof": case["proof"], "method": "GET", "htu": url, "now": now});
        assert_eq!(verify_with_jwcrypto(&wrong).unwrap()["ok"], false);
    }
}
