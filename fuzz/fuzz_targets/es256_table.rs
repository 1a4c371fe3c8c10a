#![no_main]
//! Differential: ES256 through a key whose precomputed table is built (zsp-core's
//! `p256_comb`) against aws-lc-rs on the same key. Mode bit 0 set: the input's 64 bytes are
//! XORed onto a real signature of the message, so the fuzzer explores signatures near valid
//! ones (all-zero bytes give the valid signature itself); clear: the bytes are the signature.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self as sig, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, ParsedPublicKey,
};
use zsp_core::keys::{Jwk, VerifyingKey};

struct Fixture {
    signer: EcdsaKeyPair,
    key: VerifyingKey,
    aws: ParsedPublicKey,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let public = signer.public_key().as_ref().to_vec();
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": zsp_core::b64::encode(&public[1..33]),
            "y": zsp_core::b64::encode(&public[33..65]),
        }))
        .unwrap();
        let key = VerifyingKey::from_jwk(&jwk, None).unwrap();
        // Use the key until its table is built, checking the verdicts on the way.
        let msg = b"warm-up";
        let good = signer.sign(&rng, msg).unwrap();
        for _ in 0..64 {
            assert!(key.verify(msg, good.as_ref()));
        }
        let aws = ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, public).unwrap();
        Fixture { signer, key, aws }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else { return };
    if rest.len() < 64 {
        return;
    }
    let (bytes, msg) = rest.split_at(64);
    let signature: Vec<u8> = if mode & 1 == 1 {
        let real = f.signer.sign(&SystemRandom::new(), msg).unwrap();
        real.as_ref().iter().zip(bytes).map(|(a, b)| a ^ b).collect()
    } else {
        bytes.to_vec()
    };
    let ours = f.key.verify(msg, &signature);
    let theirs = f.aws.verify_sig(msg, &signature).is_ok();
    assert_eq!(ours, theirs, "verdicts differ");
});
