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

/// `verify_bytes_now` calls the caller's syntax check for every presentation but one: the
/// very bytes of a token this verifier verified before and still holds in its signature cache
/// (never on a single-use route, never with the cache off). What it decides is otherwise
/// `verify_now`'s.
#[tokio::test]
async fn verify_bytes_now_skips_the_syntax_check_only_for_a_token_it_verified() {
    let f = fixture_with(policy());
    let build = |cache: usize| {
        Verifier::builder(policy().build().unwrap(), f.issuer.key_set())
            .clock(f.clock.clone())
            .signature_cache(cache)
            .build()
    };
    fn refuse(_: &[u8]) -> Result<&str, Denial> {
        Err(Denial::InvalidRequest("refused by the caller"))
    }
    // Whether the caller's syntax check ran (and refused): it runs only for bytes the
    // signature cache does not know.
    let checked_syntax = |v: &Verifier, token: &[u8], req: &RequestFacts<'_>| {
        v.verify_bytes_now(token, refuse, req, |_| Ok(())).unwrap().err()
            == Some(Denial::InvalidRequest("refused by the caller"))
    };
    let get = RequestFacts::new(&Method::GET, "/orders/7");
    let token = f.read_token();

    let cached = build(64);
    // Unknown bytes: the caller's check decides first.
    assert!(checked_syntax(&cached, token.as_bytes(), &get));
    // Verified once (through the text entry point), the same bytes are recognised.
    assert!(cached.verify_now(&token, &get, |_| Ok(())).unwrap().is_ok());
    let grant = cached
        .verify_bytes_now(token.as_bytes(), refuse, &get, |_| Ok(()))
        .unwrap()
        .unwrap();
    assert_eq!(grant.route(), Some("/orders/{id}"));
    // The route's rules and the caller's check still run on a hit.
    let delete = RequestFacts::new(&Method::DELETE, "/orders/7");
    assert!(matches!(
        cached
            .verify_bytes_now(token.as_bytes(), refuse, &delete, |_| Ok(()))
            .unwrap()
            .unwrap_err(),
        Denial::InsufficientScope { .. }
    ));
    assert_eq!(
        cached
            .verify_bytes_now(token.as_bytes(), refuse, &get, |_| Err(
                Denial::DpopBoundTokenAsBearer
            ))
            .unwrap()
            .unwrap_err(),
        Denial::DpopBoundTokenAsBearer
    );
    // One byte more is other bytes.
    let longer = format!("{token} ");
    assert!(checked_syntax(&cached, longer.as_bytes(), &get));
    // Expired in the meantime: the entry died with the token, and the check runs again.
    f.clock.advance(3600);
    assert!(checked_syntax(&cached, token.as_bytes(), &get));
    let text = |b| std::str::from_utf8(b).map_err(|_| Denial::Malformed("not UTF-8"));
    assert_eq!(
        cached
            .verify_bytes_now(token.as_bytes(), text, &get, |_| Ok(()))
            .unwrap()
            .unwrap_err(),
        Denial::Expired
    );

    // Without the cache the check runs every time.
    let uncached = build(0);
    let token = f.read_token();
    assert!(uncached.verify_now(&token, &get, |_| Ok(())).unwrap().is_ok());
    assert!(checked_syntax(&uncached, token.as_bytes(), &get));
    // Nor on a single-use route, whose tokens are never cached.
    let write = f.issuer.token(AUD, &["orders:write"]).mint().unwrap();
    let post = RequestFacts::new(&Method::POST, "/orders");
    let first = cached.verify_now(&write, &post, |_| Ok(())).unwrap_err();
    assert!(cached.finish(first, &post, |_| Ok(())).await.is_ok());
    assert!(checked_syntax(&cached, write.as_bytes(), &post));
}
