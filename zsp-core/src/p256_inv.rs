//! The inverse of an ES256 signature's `s` modulo the P-256 group order `n`, in variable time.
//!
//! Why this exists: verifying on tables ([`crate::p256_comb`]) left the inversion of `s` as the
//! largest step besides the table additions themselves. The `p256` crate's `invert_vartime`
//! (Stein's binary algorithm on full modular scalars) took about a third of a table verify
//! (12.2–12.5 µs of 38.5 µs on host H); this takes under 2 µs, the check included
//! (BENCHMARKS.md).
//!
//! The algorithm is Bernstein and Yang's "safegcd" divsteps ("Fast constant-time gcd computation
//! and modular inversion", 2019) in the variable-time form of libsecp256k1's
//! `secp256k1_modinv64_var` (MIT licence; see its `doc/safegcd_implementation.md`): batches of 62
//! divsteps computed on the low 64 bits of `f` and `g` alone, each batch's 2×2 transition matrix
//! then applied to the full numbers held as five signed 62-bit limbs.
//!
//! Only public data goes in (a signature's `s`), so variable time is fine. The result is never
//! trusted on the algorithm alone: it is multiplied back by `s`, and anything but 1 (which the
//! tests have never seen) falls back to the `p256` crate's constant-time inversion, so a bug
//! here could cost time but never change a verdict.

use p256::Scalar;
use p256::elliptic_curve::Field;
use p256::elliptic_curve::bigint::U256;
use p256::elliptic_curve::scalar::FromUintUnchecked;

const M62: u64 = u64::MAX >> 2;

/// The group order `n`, little-endian 64-bit words.
const N: [u64; 4] = [
    0xf3b9_cac2_fc63_2551,
    0xbce6_faad_a717_9e84,
    0xffff_ffff_ffff_ffff,
    0xffff_ffff_0000_0000,
];

/// `n` as five 62-bit limbs.
const N62: [i64; 5] = to_s62(&N);

/// `n⁻¹ mod 2⁶²`, by Newton's iteration (each step doubles the correct low bits; an odd
/// number is its own inverse modulo 8).
const N_INV62: u64 = {
    let n = N[0];
    let mut x = n;
    let mut k = 0;
    while k < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(n.wrapping_mul(x)));
        k += 1;
    }
    x & M62
};

/// Outer iterations after which the loop gives up: with the original divstep, as here, 256-bit
/// inputs need at most ⌊(49·256 + 57)/17⌋ = 741 divsteps (Bernstein–Yang's bound), which twelve
/// batches of 62 cover. Past it the caller falls back to the constant-time inverse.
const MAX_BATCHES: usize = 12;

/// Four 64-bit words (below 2²⁵⁶) as five 62-bit limbs.
const fn to_s62(a: &[u64; 4]) -> [i64; 5] {
    [
        (a[0] & M62) as i64,
        ((a[0] >> 62 | a[1] << 2) & M62) as i64,
        ((a[1] >> 60 | a[2] << 4) & M62) as i64,
        ((a[2] >> 58 | a[3] << 6) & M62) as i64,
        (a[3] >> 56) as i64,
    ]
}

/// Five normalised 62-bit limbs (each in `[0, 2⁶²)`, the value below 2²⁵⁶) as four words.
fn from_s62(v: &[i64; 5]) -> [u64; 4] {
    let v = v.map(|x| x as u64);
    [
        v[0] | v[1] << 62,
        v[1] >> 2 | v[2] << 60,
        v[2] >> 4 | v[3] << 58,
        v[3] >> 6 | v[4] << 56,
    ]
}

/// The transition matrix of a batch of divsteps, scaled by 2⁶².
#[derive(Clone, Copy)]
struct Trans {
    u: i64,
    v: i64,
    q: i64,
    r: i64,
}

/// 62 divsteps on the low bits of `f` (odd) and `g`; returns the new `eta` (minus delta) and
/// the matrix. Runs of zeros in `g` are skipped at once, and up to six bits of `g` are
/// cancelled per step: the variable-time shortcuts of libsecp256k1's
/// `secp256k1_modinv64_divsteps_62_var`. All arithmetic is modulo 2⁶⁴ by design.
fn divsteps_62(mut eta: i64, f0: u64, g0: u64) -> (i64, Trans) {
    let (mut u, mut v, mut q, mut r) = (1u64, 0u64, 0u64, 1u64);
    let (mut f, mut g) = (f0, g0);
    let mut i: u32 = 62;
    loop {
        // A sentinel bit at `i` stops the count at the steps left.
        let zeros = (g | (u64::MAX << i)).trailing_zeros();
        g >>= zeros;
        u <<= zeros;
        v <<= zeros;
        eta -= i64::from(zeros);
        i -= zeros;
        if i == 0 {
            break;
        }
        let (w, m);
        if eta < 0 {
            eta = -eta;
            (f, g) = (g, f.wrapping_neg());
            (u, q) = (q, u.wrapping_neg());
            (v, r) = (r, v.wrapping_neg());
            // Cancel up to six bits of g, but no more than the steps left nor past eta's
            // next sign change.
            let limit = (eta + 1).min(i64::from(i)) as u32;
            m = (u64::MAX >> (64 - limit)) & 63;
            w = f.wrapping_mul(g).wrapping_mul(f.wrapping_mul(f).wrapping_sub(2)) & m;
        } else {
            let limit = (eta + 1).min(i64::from(i)) as u32;
            m = (u64::MAX >> (64 - limit)) & 15;
            let w0 = f.wrapping_add((f.wrapping_add(1) & 4) << 1);
            w = w0.wrapping_neg().wrapping_mul(g) & m;
        }
        g = g.wrapping_add(f.wrapping_mul(w));
        q = q.wrapping_add(u.wrapping_mul(w));
        r = r.wrapping_add(v.wrapping_mul(w));
    }
    let t = Trans {
        u: u as i64,
        v: v as i64,
        q: q as i64,
        r: r as i64,
    };
    (eta, t)
}

fn mul(a: i64, b: i64) -> i128 {
    i128::from(a).wrapping_mul(i128::from(b))
}

/// `[d, e] ← t·[d, e] / 2⁶² (mod n)`, adding the multiple of `n` that makes the division exact
/// and keeps both in `(-2n, n)`.
fn update_de(d: &mut [i64; 5], e: &mut [i64; 5], t: Trans) {
    let m62 = M62 as i64;
    let Trans { u, v, q, r } = t;
    let sd = d[4] >> 63;
    let se = e[4] >> 63;
    let mut md = (u & sd).wrapping_add(v & se);
    let mut me = (q & sd).wrapping_add(r & se);
    let mut cd = mul(u, d[0]).wrapping_add(mul(v, e[0]));
    let mut ce = mul(q, d[0]).wrapping_add(mul(r, e[0]));
    md = md.wrapping_sub((N_INV62.wrapping_mul(cd as u64).wrapping_add(md as u64) & M62) as i64);
    me = me.wrapping_sub((N_INV62.wrapping_mul(ce as u64).wrapping_add(me as u64) & M62) as i64);
    cd = cd.wrapping_add(mul(N62[0], md)) >> 62;
    ce = ce.wrapping_add(mul(N62[0], me)) >> 62;
    for k in 1..5 {
        cd = cd
            .wrapping_add(mul(u, d[k]))
            .wrapping_add(mul(v, e[k]))
            .wrapping_add(mul(N62[k], md));
        ce = ce
            .wrapping_add(mul(q, d[k]))
            .wrapping_add(mul(r, e[k]))
            .wrapping_add(mul(N62[k], me));
        d[k - 1] = (cd as i64) & m62;
        e[k - 1] = (ce as i64) & m62;
        cd >>= 62;
        ce >>= 62;
    }
    d[4] = cd as i64;
    e[4] = ce as i64;
}

/// `[f, g] ← t·[f, g] / 2⁶²` (exact), on the `len` limbs still in use.
fn update_fg(len: usize, f: &mut [i64; 5], g: &mut [i64; 5], t: Trans) {
    let m62 = M62 as i64;
    let Trans { u, v, q, r } = t;
    let mut cf = mul(u, f[0]).wrapping_add(mul(v, g[0])) >> 62;
    let mut cg = mul(q, f[0]).wrapping_add(mul(r, g[0])) >> 62;
    for k in 1..len {
        cf = cf.wrapping_add(mul(u, f[k])).wrapping_add(mul(v, g[k]));
        cg = cg.wrapping_add(mul(q, f[k])).wrapping_add(mul(r, g[k]));
        f[k - 1] = (cf as i64) & m62;
        g[k - 1] = (cg as i64) & m62;
        cf >>= 62;
        cg >>= 62;
    }
    f[len - 1] = cf as i64;
    g[len - 1] = cg as i64;
}

/// `d` from `(-2n, n)` to `[0, n)`, negated first when `sign` is negative.
fn normalize(d: &mut [i64; 5], sign: i64) {
    let m62 = M62 as i64;
    let carry = |d: &mut [i64; 5]| {
        for k in 0..4 {
            d[k + 1] = d[k + 1].wrapping_add(d[k] >> 62);
            d[k] &= m62;
        }
    };
    let add_n_if_negative = |d: &mut [i64; 5]| {
        let neg = d[4] >> 63;
        for (l, n) in d.iter_mut().zip(N62) {
            *l = l.wrapping_add(n & neg);
        }
    };
    add_n_if_negative(d);
    let flip = sign >> 63;
    for l in d.iter_mut() {
        *l = (*l ^ flip).wrapping_sub(flip);
    }
    carry(d);
    add_n_if_negative(d);
    carry(d);
}

/// `x⁻¹ mod n` for `x` in `[1, n)` by safegcd; `None` if the loop ran past its bound.
fn safegcd(x: &[u64; 4]) -> Option<[u64; 4]> {
    let mut d = [0i64; 5];
    let mut e = [1i64, 0, 0, 0, 0];
    let mut f = N62;
    let mut g = to_s62(x);
    let mut len = 5usize;
    let mut eta: i64 = -1;
    for _ in 0..MAX_BATCHES {
        let (next, t) = divsteps_62(eta, f[0] as u64, g[0] as u64);
        eta = next;
        update_de(&mut d, &mut e, t);
        update_fg(len, &mut f, &mut g, t);
        if g[..len].iter().all(|&l| l == 0) {
            // f is ±1 (n is prime), and d is ± the inverse.
            normalize(&mut d, f[len - 1]);
            return Some(from_s62(&d));
        }
        // When the top limbs of f and g are both 0 or -1, fold them into the limb below.
        let (fl, gl) = (f[len - 1], g[len - 1]);
        if len > 1 && (fl ^ (fl >> 63)) | (gl ^ (gl >> 63)) == 0 {
            f[len - 2] |= ((fl as u64) << 62) as i64;
            g[len - 2] |= ((gl as u64) << 62) as i64;
            len -= 1;
        }
    }
    None
}

/// `s⁻¹ mod n`; `None` for zero.
pub(crate) fn invert(s: &Scalar) -> Option<Scalar> {
    if bool::from(s.is_zero()) {
        return None;
    }
    by_safegcd(s)
        .filter(|w| *w * s == Scalar::ONE)
        .or_else(|| s.invert().into())
}

/// [`safegcd`] on a scalar, unchecked.
fn by_safegcd(s: &Scalar) -> Option<Scalar> {
    safegcd(&U256::from(*s).to_words()).map(|w| Scalar::from_uint_unchecked(U256::from_words(w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::ops::Reduce;
    use proptest::prelude::*;

    fn slow(s: &Scalar) -> Scalar {
        Option::from(s.invert()).expect("non-zero")
    }

    #[test]
    fn constants() {
        assert_eq!(N_INV62.wrapping_mul(N62[0] as u64) & M62, 1);
        assert_eq!(from_s62(&N62), N);
        assert_eq!(
            U256::from_words(N),
            U256::from(-Scalar::ONE).wrapping_add(&U256::ONE)
        );
    }

    #[test]
    fn matches_the_constant_time_inverse_at_the_edges() {
        let mut edges = vec![
            Scalar::ONE,
            Scalar::from(2u64),
            Scalar::from(3u64),
            -Scalar::ONE,
            -Scalar::from(2u64),
            slow(&Scalar::from(2u64)), // (n + 1) / 2
            Scalar::from(u64::MAX),
        ];
        // Powers of two, their neighbours and negations: every limb boundary of both
        // representations, and long runs of zeros and ones.
        let mut p = Scalar::ONE;
        for _ in 0..256 {
            for e in [p, -p, p + Scalar::ONE, p - Scalar::ONE, -p + Scalar::ONE] {
                edges.push(e);
            }
            p = p.double();
        }
        for s in edges.into_iter().filter(|s| !bool::from(s.is_zero())) {
            assert_eq!(by_safegcd(&s), Some(slow(&s)), "{s:?}");
            assert_eq!(invert(&s), Some(slow(&s)));
        }
        assert_eq!(invert(&Scalar::ZERO), None);
    }

    /// Prints what one inversion costs, this module's beside the `p256` crate's variable-time
    /// one, interleaved in 20 rounds of 1024 scalars; the median of the per-round figures
    /// (`cargo test --release -p zsp-core --lib -- --ignored inversion_cost --nocapture`).
    #[test]
    #[ignore]
    fn inversion_cost() {
        use p256::elliptic_curve::ops::Invert;
        let mut x = Scalar::from(0x5eed_u64);
        let xs: Vec<Scalar> = (0..1024)
            .map(|_| {
                x = x * x + Scalar::from(7u64);
                x
            })
            .collect();
        let time = |f: &dyn Fn(&Scalar) -> Option<Scalar>| {
            let start = std::time::Instant::now();
            for s in &xs {
                std::hint::black_box(f(std::hint::black_box(s)));
            }
            start.elapsed().as_nanos() as f64 / xs.len() as f64
        };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            ours.push(time(&invert));
            theirs.push(time(&|s| Option::from(Invert::invert_vartime(s))));
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (ours, theirs) = (median(&mut ours), median(&mut theirs));
        println!(
            "inversion mod n: safegcd {ours:.0} ns (with the check by multiplication), p256 invert_vartime {theirs:.0} ns, {:.3}×",
            ours / theirs
        );
    }

    proptest! {
        #[test]
        fn matches_the_constant_time_inverse(bytes in any::<[u8; 32]>()) {
            let s = <Scalar as Reduce<U256>>::reduce(U256::from_be_slice(&bytes));
            prop_assume!(!bool::from(s.is_zero()));
            prop_assert_eq!(by_safegcd(&s), Some(slow(&s)));
        }

        /// Scalars with few bits set (or few clear) take the longest runs of the shortcuts.
        #[test]
        fn matches_on_sparse_scalars(bits in proptest::collection::vec(0u32..256, 1..6), negate: bool) {
            let mut s = Scalar::ZERO;
            for b in bits {
                let mut p = Scalar::ONE;
                for _ in 0..b {
                    p = p.double();
                }
                s += p;
            }
            let s = if negate { -s } else { s };
            prop_assume!(!bool::from(s.is_zero()));
            prop_assert_eq!(by_safegcd(&s), Some(slow(&s)));
        }
    }
}
