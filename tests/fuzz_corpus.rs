//! The checked-in fuzz seed corpora as ordinary regression tests, on stable: every file under
//! `fuzz/corpus/<target>/` goes through the same harness function the cargo-fuzz target calls
//! (`fuzz/harness.rs`). Crash reproducers found by fuzzing are added to the corpora, so a fixed
//! finding stays fixed. Seeds named `valid*` must be accepted and `deny*` refused, so a seed
//! that silently stops reaching the code it was written for fails here.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn run(target: &str) {
    let (_, f) = harness::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("unknown target {target}"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| f(&data));
        let Ok(accepted) = r else {
            panic!("{target}: {} panicked", path.display());
        };
        // Seed names state intent, so the seeds keep reaching the code they were written for.
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("valid") {
            assert!(accepted, "{target}: {name} should be accepted");
        }
        if name.starts_with("deny") {
            assert!(!accepted, "{target}: {name} should be refused");
        }
        n += 1;
    }
    assert!(n > 0, "{target}: empty corpus");
}

#[test]
fn corpus_jws() {
    run("jws");
}

#[test]
fn corpus_jwks() {
    run("jwks");
}

#[test]
fn corpus_dpop() {
    run("dpop");
}

#[test]
fn corpus_token_response() {
    run("token_response");
}

#[test]
fn corpus_authorization() {
    run("authorization");
}

#[test]
fn corpus_policy() {
    run("policy");
}

#[test]
fn corpus_es256_table() {
    run("es256_table");
}

#[test]
fn every_corpus_directory_has_a_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            harness::TARGETS.iter().any(|(t, _)| *t == name),
            "corpus {name} has no harness target"
        );
    }
}
