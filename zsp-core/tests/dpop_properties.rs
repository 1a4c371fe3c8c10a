//! Property tests for everything DPoP parses from untrusted bytes: proofs, URIs, nonces.

use http::Method;
use proptest::prelude::*;
use zsp_core::dpop::{DpopKey, DpopVerifier, NonceIssuer, normalize_htu};

const NOW: u64 = 1_700_000_000;
const HTU: &str = "https://api.example/x";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().unwrap()
}

fn verify(v: &DpopVerifier, proof: &str) -> bool {
    rt().block_on(v.verify(&[proof], &Method::GET, HTU, Some("t"), None, NOW))
        .is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_proof_strings_never_verify(s in "\\PC{0,600}") {
        let v = DpopVerifier::builder().build().unwrap();
        prop_assert!(!verify(&v, &s));
    }

    #[test]
    fn arbitrary_jws_shaped_proofs_never_verify(h in "[A-Za-z0-9_-]{0,200}", p in "[A-Za-z0-9_-]{0,200}", s in "[A-Za-z0-9_-]{0,100}") {
        let v = DpopVerifier::builder().build().unwrap();
        let proof = format!("{h}.{p}.{s}");
        prop_assert!(!verify(&v, &proof));
    }

    #[test]
    fn any_single_byte_mutation_of_a_valid_proof_never_verifies(ed in any::<bool>(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let key = if ed { DpopKey::generate_ed25519() } else { DpopKey::generate_es256() }.unwrap();
        let proof = key.proof_at(&Method::GET, HTU, Some("t"), None, NOW).unwrap();
        let mut bytes = proof.clone().into_bytes();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        let v = DpopVerifier::builder().build().unwrap();
        prop_assert!(!verify(&v, &mutated));
        // The original is still good: the mutation was refused on its own merits.
        prop_assert!(verify(&v, &proof));
    }

    #[test]
    fn htu_normalisation_never_panics_and_is_idempotent(s in "\\PC{0,200}") {
        if let Ok(n) = normalize_htu(&s) {
            prop_assert_eq!(normalize_htu(&n), Ok(n.clone()));
            prop_assert!(!n.contains(['?', '#', '\0']));
        }
    }

    #[test]
    fn htu_normalisation_of_uri_shaped_input_is_idempotent(
        scheme in "[hH][tT][tT][pP][sS]?", host in "[a-zA-Z0-9.-]{1,20}", port in proptest::option::of(0u16..),
        path in "(/([a-zA-Z0-9._~!$&'()*+,;=:@-]|%[0-9a-fA-F]{2}|\\.|\\.\\.){0,6}){0,6}",
    ) {
        let uri = match port {
            Some(p) => format!("{scheme}://{host}:{p}{path}"),
            None => format!("{scheme}://{host}{path}"),
        };
        let n = normalize_htu(&uri);
        prop_assert!(n.is_ok(), "{uri:?}: {n:?}");
        let n = n.unwrap();
        prop_assert_eq!(normalize_htu(&n), Ok(n.clone()));
        prop_assert!(n.starts_with("http://") || n.starts_with("https://"));
        let after_scheme = &n[n.find("://").unwrap() + 3..];
        let path = &after_scheme[after_scheme.find('/').unwrap()..];
        prop_assert!(path.split('/').all(|seg| seg != "." && seg != ".."), "{path}");
    }

    #[test]
    fn arbitrary_nonces_are_refused(s in "\\PC{0,64}", now in any::<u64>()) {
        let issuer = NonceIssuer::builder(&[3u8; 32]).build().unwrap();
        prop_assume!(s != issuer.current(now));
        prop_assert!(issuer.check(&s, now).is_err());
    }

    #[test]
    fn issued_nonces_hold_for_their_window_at_any_time(now in 0u64..u64::MAX / 2, later in 0u64..180) {
        let issuer = NonceIssuer::builder(&[3u8; 32]).build().unwrap();
        let n = issuer.current(now);
        let step_end = now - now % 60 + 60;
        let res = issuer.check(&n, now + later);
        if now + later < step_end + 120 {
            prop_assert_eq!(res, Ok(()));
        } else {
            prop_assert!(res.is_err());
        }
    }
}
