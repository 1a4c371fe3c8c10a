//! The verifier's decision table (`verify_table/cases.rs`) through the synchronous entry
//! point: `Verifier::verify_now`, then `Verifier::finish` when it had to stop (the fixture
//! has a revocation store, so every token that passes the checks waits for it). Each case must
//! decide exactly as through `verify`.

const VIA_VERIFY_NOW: bool = true;

include!("verify_table/cases.rs");

#[tokio::test]
async fn verify_now_decides_without_waiting_when_no_store_is_involved() {
    let f = fixture_with(policy());
    let plain = Verifier::builder(policy().build().unwrap(), f.issuer.key_set())
        .clock(f.clock.clone())
        .build();
    let get = RequestFacts::new(&Method::GET, "/orders/7");
    let token = f.read_token();
    let grant = plain.verify_now(&token, &get, |_| Ok(())).unwrap().unwrap();
    assert_eq!(grant.route(), Some("/orders/{id}"));
    // Denials are decided at once, the caller's check included.
    assert_eq!(
        plain.verify_now("x.y.z", &get, |_| Ok(())).unwrap().unwrap_err(),
        Denial::Malformed("header base64")
    );
    assert_eq!(
        plain
            .verify_now(&token, &get, |_| Err(Denial::DpopBoundTokenAsBearer))
            .unwrap()
            .unwrap_err(),
        Denial::DpopBoundTokenAsBearer
    );
    // A single-use route waits for the replay guard; its first use is recorded once.
    let write = f.issuer.token(AUD, &["orders:write"]).mint().unwrap();
    let post = RequestFacts::new(&Method::POST, "/orders");
    let unfinished = plain.verify_now(&write, &post, |_| Ok(())).unwrap_err();
    assert!(format!("{unfinished:?}").contains("stores"));
    assert!(plain.finish(unfinished, &post, |_| Ok(())).await.is_ok());
    let again = plain.verify_now(&write, &post, |_| Ok(())).unwrap_err();
    assert_eq!(
        plain.finish(again, &post, |_| Ok(())).await.unwrap_err(),
        Denial::Replayed
    );
    // A caller check that denies before the stores never burns the jti.
    let other = f.issuer.token(AUD, &["orders:write"]).mint().unwrap();
    assert_eq!(
        plain
            .verify_now(&other, &post, |_| Err(Denial::DpopBoundTokenAsBearer))
            .unwrap()
            .unwrap_err(),
        Denial::DpopBoundTokenAsBearer
    );
    let first = plain.verify_now(&other, &post, |_| Ok(())).unwrap_err();
    assert!(plain.finish(first, &post, |_| Ok(())).await.is_ok());
}
