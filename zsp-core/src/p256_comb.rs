//! ES256 (ECDSA P-256 with SHA-256) verification on precomputed per-key tables.
//!
//! Why this exists: an ECDSA check is `x(u1·G + u2·Q) ≡ r (mod n)`. A general verifier (aws-lc
//! included) spends most of its time on `u2·Q`, a variable-base multiplication: 256 doublings
//! and about 50 additions. A verifier checks thousands of tokens against the same one or two
//! issuer keys, so the multiples of `Q` can be computed once, as they are for `G`. With a table
//! of `d·256^i·Q` for every byte position `i` and signed byte `d`, both multiplications become
//! 32 table additions each and no doublings. On the benchmark hosts this halves the cost of an
//! ES256 verify (BENCHMARKS.md). A table takes 256 KiB per key and about as long to build as
//! forty verifications, so it is built only for a key that has verified [`BUILD_AFTER`] tokens.
//!
//! What is ours and what is not: the field and scalar arithmetic (Montgomery form, field
//! inversion, reduction of the digest) and the check that a key's point is on the curve are the
//! `p256` crate's (RustCrypto). Ours are the inversion of `s` ([`crate::p256_inv`], checked by
//! multiplying back), the table layout, the signed-byte recoding, two textbook point formulas
//! in Jacobian coordinates (`madd-2007-bl` and `dbl-2001-b` from the Explicit-Formulas
//! Database, with the cases those formulas exclude handled before them), the batched
//! normalisation of a table and the final comparison without an inversion. The tests
//! check each part against the `p256` crate's own scalar multiplication and the whole against
//! aws-lc-rs on valid, mutated, out-of-range and arbitrary signatures; the fuzz target
//! `es256_table` does the same coverage-guided.
//!
//! Everything here works on public data (the token, its signature, the public key), so
//! variable-time code is fine: nothing secret can leak through timing.
//!
//! Invariants:
//! * `r` and `s` must each lie in `[1, n-1]`; anything else is refused before any arithmetic;
//! * the point at infinity is never accepted as `R`;
//! * a table is only built from a point the `p256` crate accepted as on the curve, and the table
//!   never holds the point at infinity (every entry is a non-zero multiple below the group order
//!   of a point of prime order).

use p256::elliptic_curve::bigint::{Encoding, U256};
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::sec1::FromEncodedPoint;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::elliptic_curve::{Field, PrimeField};
use p256::{AffinePoint, EncodedPoint, FieldBytes, FieldElement, Scalar};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Byte positions of a 256-bit scalar.
const WINDOWS: usize = 32;
/// Magnitudes of a signed byte digit: 1..=128.
const DIGITS: usize = 128;

/// The field prime `p`.
const P: U256 = U256::from_be_hex("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff");
/// The group order `n`.
const N: U256 = U256::from_be_hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");

/// A point in affine coordinates, never the point at infinity. One cache line each: a table
/// entry read is one line fetched, not two.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Affine {
    x: FieldElement,
    y: FieldElement,
}

/// A point in Jacobian coordinates: `(X:Y:Z)` is `(X/Z², Y/Z³)`; `Z = 0` is the point at
/// infinity.
#[derive(Clone, Copy)]
struct Point {
    x: FieldElement,
    y: FieldElement,
    z: FieldElement,
}

impl Point {
    const IDENTITY: Point = Point {
        x: FieldElement::ONE,
        y: FieldElement::ONE,
        z: FieldElement::ZERO,
    };

    /// `self + (x, y)` for a finite `(x, y)`, for every `self`.
    ///
    /// The general case is `madd-2007-bl` (Explicit-Formulas Database; 7M + 4S, against 13M for
    /// the complete projective formula, which is why Jacobian coordinates are used here). That
    /// formula fails when `self` is the point at infinity, `(x, y)` itself or its negation, so
    /// those three cases are handled first: they cannot be reached by a signature without
    /// knowing the key's discrete logarithm, but a verifier must not depend on that.
    fn add_affine(&self, x: &FieldElement, y: &FieldElement) -> Point {
        if bool::from(self.z.is_zero()) {
            return Point {
                x: *x,
                y: *y,
                z: FieldElement::ONE,
            };
        }
        let z1z1 = self.z.square();
        let u2 = *x * z1z1;
        let s2 = *y * self.z * z1z1;
        let h = u2 - self.x;
        let r = (s2 - self.y).double();
        if bool::from(h.is_zero()) {
            // Same x: the same point (double it) or its negation (the sum is infinity).
            return if bool::from(r.is_zero()) {
                self.double()
            } else {
                Point::IDENTITY
            };
        }
        let hh = h.square();
        let i = hh.double().double();
        let j = h * i;
        let v = self.x * i;
        let x3 = r.square() - j - v.double();
        let y3 = r * (v - x3) - (self.y * j).double();
        let z3 = (self.z + h).square() - z1z1 - hh;
        Point { x: x3, y: y3, z: z3 }
    }

    /// `2·self`: `dbl-2001-b` for `a = -3` (3M + 5S). Correct for the point at infinity
    /// (`Z = 0` stays 0) and for points with `y = 0`, which P-256 has none of (prime order).
    fn double(&self) -> Point {
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x * gamma;
        let t = (self.x - delta) * (self.x + delta);
        let alpha = t.double() + t;
        let beta4 = beta.double().double();
        let x3 = alpha.square() - beta4.double();
        let z3 = (self.y + self.z).square() - gamma - delta;
        let gamma_sq8 = gamma.square().double().double().double();
        let y3 = alpha * (beta4 - x3) - gamma_sq8;
        Point { x: x3, y: y3, z: z3 }
    }

    /// Whether this point is finite and its affine `x`, reduced mod `n`, equals `r`.
    ///
    /// `x` is below `p` and `r` below `n`, so `x mod n = r` means `x = r` or `x = r + n` (the
    /// latter only when `r + n < p`). Compared as `X = x'·Z²`, which needs no inversion.
    fn x_is(&self, r: &U256) -> bool {
        if bool::from(self.z.is_zero()) {
            return false;
        }
        let zz = self.z.square();
        let candidates = [Some(*r), checked_below_p(r.wrapping_add(&N), r)];
        candidates.into_iter().flatten().any(|c| {
            let c: Option<FieldElement> = FieldElement::from_bytes(&FieldBytes::from(c.to_be_bytes())).into();
            c.is_some_and(|c| c * zz == self.x)
        })
    }
}

/// `sum = r + n` as computed with wrapping, if the true sum is below `p`.
fn checked_below_p(sum: U256, r: &U256) -> Option<U256> {
    // A wrapped sum is smaller than `r`; `r + n` overflowing 2^256 is certainly above `p`.
    (sum >= *r && sum < P).then_some(sum)
}

/// The multiples `d·256^i·P` for every byte position `i` and `d` in `1..=128`, plus `2^256·P`
/// for the carry out of the top byte.
pub(crate) struct Table {
    entries: Box<[Affine]>,
    top: Affine,
}

impl Table {
    /// The table for `point`; `None` for the point at infinity.
    pub(crate) fn new(point: &AffinePoint) -> Option<Table> {
        let mut base = to_affine(point)?;
        let mut entries = Vec::with_capacity(WINDOWS * DIGITS);
        for _ in 0..WINDOWS {
            let mut window = [Point {
                x: base.x,
                y: base.y,
                z: FieldElement::ONE,
            }; DIGITS];
            for d in 1..DIGITS {
                window[d] = window[d - 1].add_affine(&base.x, &base.y);
            }
            normalize_into(&window, &mut entries)?;
            // 128·base doubled is the next position's base, 256·base.
            base = normalize(&window[DIGITS - 1].double())?;
        }
        Some(Table {
            entries: entries.into_boxed_slice(),
            top: base,
        })
    }

    /// Appends to `picks` the entries, signs applied, whose sum is `k·P` for the big-endian
    /// scalar `k` below `n`: at most 33.
    fn pick(&self, k: &[u8; 32], picks: &mut Picks) {
        // Signed bytes: a byte above 128 becomes (byte − 256) and carries one into the next
        // position, so only 128 magnitudes need a table entry and negation is free.
        let mut carry = 0u16;
        for (i, &byte) in k.iter().rev().enumerate() {
            let v = u16::from(byte) + carry;
            let negative = v > 128;
            let magnitude = if negative { 256 - v } else { v };
            carry = u16::from(negative);
            if magnitude != 0 {
                let e = self.entries[i * DIGITS + usize::from(magnitude) - 1];
                picks.push(if negative { Affine { x: e.x, y: -e.y } } else { e });
            }
        }
        if carry != 0 {
            picks.push(self.top);
        }
    }

    /// `acc + k·P` for the big-endian scalar `k` below `n`.
    #[cfg(test)]
    fn add_multiple(&self, acc: &mut Point, k: &[u8; 32]) {
        let mut picks = Picks::new();
        self.pick(k, &mut picks);
        *acc = picks.sum_onto(*acc);
    }
}

/// The table entries a verification adds up, copied out of the tables before any arithmetic:
/// the copies' cache misses then overlap each other, instead of each stalling an addition (the
/// tables are 512 KiB, which the HTTP stack around a verification evicts from the caches).
struct Picks {
    entries: [Affine; 2 * (WINDOWS + 1)],
    len: usize,
}

impl Picks {
    fn new() -> Picks {
        Picks {
            entries: [Affine {
                x: FieldElement::ZERO,
                y: FieldElement::ZERO,
            }; 2 * (WINDOWS + 1)],
            len: 0,
        }
    }

    fn push(&mut self, a: Affine) {
        // Two scalars of at most 33 entries each always fit; were one ever dropped, the sum
        // would be wrong and the signature refused, never accepted.
        if let Some(slot) = self.entries.get_mut(self.len) {
            *slot = a;
            self.len += 1;
        }
    }

    fn sum_onto(&self, acc: Point) -> Point {
        self.entries[..self.len]
            .iter()
            .fold(acc, |acc, e| acc.add_affine(&e.x, &e.y))
    }
}

/// `(X/Z², Y/Z³)`; `None` for the point at infinity.
fn normalize(p: &Point) -> Option<Affine> {
    let zinv: Option<FieldElement> = p.z.invert().into();
    zinv.map(|zi| from_z_inverse(p, &zi))
}

/// The affine form of `p` given `1/Z`.
fn from_z_inverse(p: &Point, zi: &FieldElement) -> Affine {
    let zi2 = zi.square();
    Affine {
        x: p.x * zi2,
        y: p.y * zi2 * zi,
    }
}

/// Appends the affine form of every point, with one inversion for all (Montgomery's trick);
/// `None`, appending nothing, if any is the point at infinity.
fn normalize_into(points: &[Point], out: &mut Vec<Affine>) -> Option<()> {
    // prefix[i] = z_0 · … · z_i
    let mut prefix = Vec::with_capacity(points.len());
    let mut acc = FieldElement::ONE;
    for p in points {
        acc *= p.z;
        prefix.push(acc);
    }
    let mut inv: FieldElement = Option::from(acc.invert())?;
    let mut zinv = vec![FieldElement::ZERO; points.len()];
    for i in (0..points.len()).rev() {
        // inv = (z_0 · … · z_i)^-1, so z_i^-1 = inv · (z_0 · … · z_{i-1}).
        zinv[i] = if i == 0 { inv } else { inv * prefix[i - 1] };
        inv *= points[i].z;
    }
    out.extend(points.iter().zip(&zinv).map(|(p, zi)| from_z_inverse(p, zi)));
    Some(())
}

fn to_affine(a: &AffinePoint) -> Option<Affine> {
    let encoded = a.to_encoded_point(false);
    let x: Option<FieldElement> = FieldElement::from_bytes(&a.x()).into();
    let y = FieldElement::from_slice(encoded.y()?).ok()?;
    Some(Affine { x: x?, y })
}

/// The generator's table, built once per process; `None` only if the `p256` crate reported its
/// own generator as the point at infinity, in which case every signature is refused.
fn generator() -> Option<&'static Table> {
    static G: OnceLock<Option<Table>> = OnceLock::new();
    G.get_or_init(|| Table::new(&AffinePoint::GENERATOR)).as_ref()
}

/// How many verifications a key serves through aws-lc-rs before its table is built: a table costs
/// about as much as forty verifications, so keys seen once (a DPoP proof's, a test's) never pay.
const BUILD_AFTER: u32 = 32;

/// A P-256 public key whose table is built once the key has shown it is reused.
pub(crate) struct LazyTable {
    sec1: [u8; 65],
    uses: AtomicU32,
    table: OnceLock<Option<Box<Table>>>,
}

impl LazyTable {
    /// Keeps the uncompressed SEC1 encoding `04 || x || y` of a key aws-lc-rs already accepted.
    pub(crate) fn new(sec1: &[u8]) -> Option<LazyTable> {
        Some(LazyTable {
            sec1: sec1.try_into().ok()?,
            uses: AtomicU32::new(0),
            table: OnceLock::new(),
        })
    }

    /// The table, if built. The one caller that reaches the [`BUILD_AFTER`]-th use builds it;
    /// every other caller meanwhile goes on through aws-lc-rs rather than waiting.
    pub(crate) fn get(&self) -> Option<&Table> {
        if let Some(t) = self.table.get() {
            return t.as_deref();
        }
        if self.uses.fetch_add(1, Ordering::Relaxed) != BUILD_AFTER {
            return None;
        }
        let point = EncodedPoint::from_bytes(self.sec1)
            .ok()
            .and_then(|e| Option::<AffinePoint>::from(AffinePoint::from_encoded_point(&e)));
        let _ = self.table.set(point.and_then(|p| Table::new(&p)).map(Box::new));
        self.table.get().and_then(|t| t.as_deref())
    }
}

/// Verifies a fixed-width (JWS, `r || s`) ES256 signature over `message` against the key whose
/// table is `q`.
pub(crate) fn verify(q: &Table, message: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = <&[u8; 64]>::try_from(signature) else {
        return false;
    };
    let (r_bytes, s_bytes) = sig.split_at(32);
    let r = scalar(r_bytes);
    let s = scalar(s_bytes);
    let (Some(r), Some(s)) = (r, s) else {
        return false;
    };
    if bool::from(r.is_zero()) || bool::from(s.is_zero()) {
        return false;
    }
    let Some(w) = crate::p256_inv::invert(&s) else {
        return false;
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message);
    let Ok(digest) = <[u8; 32]>::try_from(digest.as_ref()) else {
        return false;
    };
    let e = <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(digest));
    let u1: [u8; 32] = (e * w).to_repr().into();
    let u2: [u8; 32] = (r * w).to_repr().into();
    let Some(g) = generator() else {
        return false;
    };
    let mut picks = Picks::new();
    g.pick(&u1, &mut picks);
    q.pick(&u2, &mut picks);
    picks
        .sum_onto(Point::IDENTITY)
        .x_is(&U256::from_be_slice(r_bytes))
}

/// The scalar a 32-byte big-endian string encodes, if below `n`.
fn scalar(bytes: &[u8]) -> Option<Scalar> {
    let bytes = <[u8; 32]>::try_from(bytes).ok()?;
    Scalar::from_repr(FieldBytes::from(bytes)).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self as sig, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use p256::ProjectivePoint;
    use proptest::prelude::*;

    fn point_of(bytes: &[u8]) -> AffinePoint {
        AffinePoint::from_encoded_point(&EncodedPoint::from_bytes(bytes).unwrap()).unwrap()
    }

    /// The curve's `b` coefficient, 0x5ac635d8aa3a93e7_b3ebbd55769886bc_651d06b0cc53b0f6_
    /// 3bce3c3e27d2604b, assembled from its 64-bit words with `p256`'s const field operations
    /// (the crate's own hex constructor is private).
    const B: FieldElement = {
        let two_64 = FieldElement::from_u64(1 << 32).square();
        let w = [
            0x5ac6_35d8_aa3a_93e7,
            0xb3eb_bd55_7698_86bc,
            0x651d_06b0_cc53_b0f6,
            0x3bce_3c3e_27d2_604b,
        ];
        let mut acc = FieldElement::from_u64(w[0]);
        let mut i = 1;
        while i < 4 {
            acc = acc.multiply(&two_64).add(&FieldElement::from_u64(w[i]));
            i += 1;
        }
        acc
    };

    fn affine_of(p: &Point) -> Option<(FieldElement, FieldElement)> {
        normalize(p).map(|a| (a.x, a.y))
    }

    fn expected(point: &AffinePoint, k: &Scalar) -> Option<(FieldElement, FieldElement)> {
        let a = (ProjectivePoint::from(*point) * k).to_affine();
        to_affine(&a).map(|a| (a.x, a.y))
    }

    struct Signer {
        kp: EcdsaKeyPair,
        table: Table,
        aws: sig::ParsedPublicKey,
    }

    fn signer() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let public = kp.public_key().as_ref().to_vec();
        let table = Table::new(&point_of(&public)).unwrap();
        let aws = sig::ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, public).unwrap();
        Signer { kp, table, aws }
    }

    impl Signer {
        fn sign(&self, msg: &[u8]) -> [u8; 64] {
            let s = self.kp.sign(&SystemRandom::new(), msg).unwrap();
            s.as_ref().try_into().unwrap()
        }
        /// Ours and aws-lc agree, and return the verdict.
        fn both(&self, msg: &[u8], sig: &[u8]) -> bool {
            let ours = verify(&self.table, msg, sig);
            let theirs = self.aws.verify_sig(msg, sig).is_ok();
            assert_eq!(ours, theirs, "verdicts differ for sig {}", hex(sig));
            ours
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn scalar_bytes(k: &Scalar) -> [u8; 32] {
        k.to_repr().into()
    }

    fn n_minus(k: u64) -> Scalar {
        -Scalar::from(k)
    }

    #[test]
    fn b_and_the_generator_satisfy_the_curve_equation() {
        let g = to_affine(&AffinePoint::GENERATOR).unwrap();
        let three = FieldElement::from_u64(3);
        assert_eq!(g.y.square(), g.x.square() * g.x - three * g.x + B);
        let p_minus_one = FieldElement::ZERO - FieldElement::ONE;
        assert_eq!(
            FieldElement::from_bytes(&FieldBytes::from((P.wrapping_sub(&U256::ONE)).to_be_bytes())).unwrap(),
            p_minus_one
        );
        assert_eq!(
            Scalar::from_repr(FieldBytes::from(N.wrapping_sub(&U256::ONE).to_be_bytes())).unwrap(),
            n_minus(1)
        );
    }

    #[test]
    fn table_multiples_match_p256_scalar_multiplication_at_the_edges() {
        let s = signer();
        let q = point_of(s.kp.public_key().as_ref());
        let mut edge: Vec<Scalar> = vec![
            Scalar::ONE,
            Scalar::from(2u64),
            Scalar::from(128u64),
            Scalar::from(129u64),
            Scalar::from(255u64),
            Scalar::from(256u64),
            n_minus(1),
            n_minus(2),
            n_minus(128),
            n_minus(129),
        ];
        // Every byte 0x80, every byte 0x81 and 0xff-runs drive the carry through all positions.
        for fill in [0x80u8, 0x81, 0x7f, 0xff] {
            let mut b = [fill; 32];
            b[0] = 0x7f;
            edge.push(Scalar::from_repr(b.into()).unwrap());
        }
        for k in &edge {
            for (table, point) in [(generator().unwrap(), AffinePoint::GENERATOR), (&s.table, q)] {
                let mut acc = Point::IDENTITY;
                table.add_multiple(&mut acc, &scalar_bytes(k));
                let got = affine_of(&acc).unwrap();
                let want = expected(&point, k).unwrap();
                assert!(
                    got.0 == want.0 && got.1 == want.1,
                    "k = {}",
                    hex(&scalar_bytes(k))
                );
            }
        }
        // Zero adds nothing: the result stays the point at infinity.
        let mut acc = Point::IDENTITY;
        s.table.add_multiple(&mut acc, &[0; 32]);
        assert!(bool::from(acc.z.is_zero()));
    }

    #[test]
    fn addition_handles_infinity_doubling_and_inverse_inputs() {
        let g = to_affine(&AffinePoint::GENERATOR).unwrap();
        let two_g = expected(&AffinePoint::GENERATOR, &Scalar::from(2u64)).unwrap();
        // G with Z = 1 and G with an arbitrary Z: the special cases must not depend on Z.
        let lambda = FieldElement::from_u64(0xdead_beef);
        let scaled = Point {
            x: g.x * lambda.square(),
            y: g.y * lambda.square() * lambda,
            z: lambda,
        };
        for p in [
            Point {
                x: g.x,
                y: g.y,
                z: FieldElement::ONE,
            },
            scaled,
        ] {
            assert!(affine_of(&p).is_some_and(|a| a == (g.x, g.y)));
            // P + P takes the doubling branch and gives 2P.
            assert!(affine_of(&p.add_affine(&g.x, &g.y)).is_some_and(|a| a == two_g));
            assert!(affine_of(&p.double()).is_some_and(|a| a == two_g));
            // P + (−P) is the point at infinity.
            assert!(bool::from(p.add_affine(&g.x, &-g.y).z.is_zero()));
            // P + 2P = 3P through the general formula.
            let three = expected(&AffinePoint::GENERATOR, &Scalar::from(3u64)).unwrap();
            assert!(affine_of(&p.add_affine(&two_g.0, &two_g.1)).is_some_and(|a| a == three));
        }
        // Infinity plus a point is that point; infinity doubled stays infinity.
        assert!(affine_of(&Point::IDENTITY.add_affine(&g.x, &g.y)).is_some_and(|a| a == (g.x, g.y)));
        assert!(bool::from(Point::IDENTITY.double().z.is_zero()));
    }

    #[test]
    fn x_comparison_covers_r_plus_n() {
        // A synthetic point whose affine x is r + n (possible only when r + n < p).
        let r = U256::from_u64(5);
        let x = FieldElement::from_bytes(&FieldBytes::from(r.wrapping_add(&N).to_be_bytes())).unwrap();
        let z = FieldElement::from_u64(0x1234_5678);
        let p = Point {
            x: x * z.square(),
            y: FieldElement::ONE,
            z,
        };
        assert!(p.x_is(&r));
        assert!(!p.x_is(&U256::from_u64(6)));
        // r + n at or above p must not be tried: with r = p − n the wrapped candidate is p ≡ 0.
        let r_big = P.wrapping_sub(&N);
        let zero_x = Point {
            x: FieldElement::ZERO,
            y: FieldElement::ONE,
            z,
        };
        assert!(!zero_x.x_is(&r_big));
        // The point at infinity matches nothing.
        assert!(!Point::IDENTITY.x_is(&U256::ZERO));
    }

    #[test]
    fn valid_signatures_verify_and_agree_with_aws_lc() {
        let s = signer();
        for i in 0..64u32 {
            let msg = format!("eyJhbGciOiJFUzI1NiJ9.payload-{i}");
            let sig = s.sign(msg.as_bytes());
            assert!(s.both(msg.as_bytes(), &sig));
            // The other valid encoding: (r, n − s).
            let mut high = sig;
            let s_scalar = scalar(&sig[32..]).unwrap();
            high[32..].copy_from_slice(&scalar_bytes(&-s_scalar));
            assert!(s.both(msg.as_bytes(), &high));
        }
    }

    #[test]
    fn wrong_message_key_or_signature_is_refused_like_aws_lc() {
        let s = signer();
        let other = signer();
        let msg = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0";
        let sig = s.sign(msg);
        assert!(!s.both(b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJiIn0", &sig));
        assert!(!other.both(msg, &sig));
        for i in 0..64 {
            for bit in [0x01u8, 0x80] {
                let mut bad = sig;
                bad[i] ^= bit;
                assert!(!s.both(msg, &bad), "flipped byte {i}");
            }
        }
        // r and s swapped.
        let mut swapped = [0u8; 64];
        swapped[..32].copy_from_slice(&sig[32..]);
        swapped[32..].copy_from_slice(&sig[..32]);
        assert!(!s.both(msg, &swapped));
        // Wrong lengths.
        assert!(!s.both(msg, &sig[..63]));
        assert!(!s.both(msg, &[sig.as_slice(), &[0]].concat()));
        assert!(!s.both(msg, &[]));
    }

    #[test]
    fn out_of_range_r_and_s_are_refused_like_aws_lc() {
        let s = signer();
        let msg = b"m";
        let sig = s.sign(msg);
        let n = N.to_be_bytes();
        let p = P.to_be_bytes();
        let n_plus_r = N.wrapping_add(&U256::from_be_slice(&sig[..32])).to_be_bytes();
        let edges: [[u8; 32]; 6] = [[0; 32], n, p, [0xff; 32], scalar_bytes(&n_minus(1)), n_plus_r];
        for e in &edges {
            let mut r_bad = sig;
            r_bad[..32].copy_from_slice(e);
            assert!(!s.both(msg, &r_bad), "r = {}", hex(e));
            let mut s_bad = sig;
            s_bad[32..].copy_from_slice(e);
            assert!(!s.both(msg, &s_bad), "s = {}", hex(e));
        }
        // s + n in place of s is the same residue but not a valid encoding.
        let s_plus_n = N.wrapping_add(&U256::from_be_slice(&sig[32..]));
        if s_plus_n > U256::from_be_slice(&sig[32..]) {
            let mut bad = sig;
            bad[32..].copy_from_slice(&s_plus_n.to_be_bytes());
            assert!(!s.both(msg, &bad));
        }
    }

    #[test]
    fn the_table_is_built_once_on_the_use_after_build_after() {
        let s = signer();
        let lazy = LazyTable::new(s.kp.public_key().as_ref()).unwrap();
        for _ in 0..BUILD_AFTER {
            assert!(lazy.get().is_none());
        }
        let t = lazy.get().map(|t| t as *const Table).unwrap();
        assert_eq!(lazy.get().map(|t| t as *const Table), Some(t));
        let msg = b"x";
        assert!(verify(lazy.get().unwrap(), msg, &s.sign(msg)));
        // Not an uncompressed SEC1 point: no lazy table at all.
        assert!(LazyTable::new(&[4; 33]).is_none());
    }

    /// Not a check: prints what a table costs to build, for BENCHMARKS.md
    /// (`cargo test --release -p zsp-core --lib -- --ignored table_build_cost --nocapture`).
    #[test]
    #[ignore]
    fn table_build_cost() {
        let s = signer();
        let q = point_of(s.kp.public_key().as_ref());
        let _ = generator();
        let start = std::time::Instant::now();
        let n = 20u32;
        for _ in 0..n {
            std::hint::black_box(Table::new(&q));
        }
        let per = start.elapsed() / n;
        let bytes = std::mem::size_of::<Affine>() * (WINDOWS * DIGITS + 1);
        println!("table build: {per:?} per key, {} KiB per table", bytes / 1024);
    }

    #[test]
    fn the_point_at_infinity_has_no_table() {
        assert!(Table::new(&AffinePoint::IDENTITY).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_signatures_get_aws_lc_s_verdict(msg in proptest::collection::vec(any::<u8>(), 0..64), sig in proptest::collection::vec(any::<u8>(), 64)) {
            let s = signer_once();
            let _ = s.both(&msg, &sig);
        }

        #[test]
        fn generator_table_matches_scalar_multiplication(k in proptest::array::uniform32(any::<u8>())) {
            let k = <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(k));
            let mut acc = Point::IDENTITY;
            generator().unwrap().add_multiple(&mut acc, &scalar_bytes(&k));
            let got = affine_of(&acc);
            let want = expected(&AffinePoint::GENERATOR, &k);
            prop_assert_eq!(got.map(|(x, y)| (x.to_bytes(), y.to_bytes())), want.map(|(x, y)| (x.to_bytes(), y.to_bytes())));
        }

        #[test]
        fn signatures_of_arbitrary_messages_verify(msg in proptest::collection::vec(any::<u8>(), 0..256)) {
            let s = signer_once();
            let sig = s.sign(&msg);
            prop_assert!(s.both(&msg, &sig));
        }
    }

    fn signer_once() -> &'static Signer {
        static S: OnceLock<Signer> = OnceLock::new();
        S.get_or_init(signer)
    }
}
