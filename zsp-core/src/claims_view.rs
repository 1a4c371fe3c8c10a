//! The claims as the verifier reads them: one borrowing parse of the payload, no copies.
//!
//! Every check before and after the signature runs on a [`ClaimsView`] that borrows its
//! strings from the decoded payload (serde_json borrows any string without escapes), so a
//! token that is expired or for another audience costs no allocation beyond its payload. The
//! few strings a [`crate::Grant`] keeps are remembered as [`Text`]: a range of the payload, or
//! an owned copy when JSON escapes made the decoded text differ from the bytes.
//!
//! The owned [`Claims`] of [`crate::Grant::registered`] are built from this same view
//! ([`ClaimsView::into_claims`]), never from a second, different parser, so what the checks
//! saw and what the handler sees cannot disagree.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

use crate::claims::{Actor, Audience, Claims, Confirmation, ScpClaim};
use crate::clock::UnixTime;
use crate::flat_json;

/// The registered claims, borrowed from the payload.
#[derive(Deserialize, Default)]
pub(crate) struct ClaimsView<'a> {
    #[serde(default, borrow)]
    pub iss: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub sub: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub aud: Option<AudView<'a>>,
    #[serde(default)]
    pub exp: Option<UnixTime>,
    #[serde(default)]
    pub nbf: Option<UnixTime>,
    #[serde(default)]
    pub iat: Option<UnixTime>,
    #[serde(default, borrow)]
    pub jti: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub client_id: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub scope: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub scp: Option<ScpView<'a>>,
    #[serde(default, borrow)]
    pub cnf: Option<CnfView<'a>>,
    #[serde(default, borrow)]
    pub act: Option<ActorView<'a>>,
    #[serde(default)]
    pub single_use: Option<bool>,
}

/// `aud`: one string or an array of strings.
pub(crate) enum AudView<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

/// `scp`: an array of scopes or a space-delimited string.
pub(crate) enum ScpView<'a> {
    List(Vec<Cow<'a, str>>),
    Space(Cow<'a, str>),
}

#[derive(Deserialize)]
pub(crate) struct CnfView<'a> {
    #[serde(default, borrow)]
    pub jkt: Option<Str<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct ActorView<'a> {
    #[serde(default, borrow)]
    sub: Option<Str<'a>>,
    #[serde(default, borrow)]
    client_id: Option<Str<'a>>,
    #[serde(default, borrow)]
    act: Option<Box<ActorView<'a>>>,
}

/// A string or an array of strings, borrowed where possible; one visitor, no buffering
/// (an untagged enum would buffer the value first).
struct StrOrSeq<'a>(Result<Cow<'a, str>, Vec<Cow<'a, str>>>);

impl<'de: 'a, 'a> Deserialize<'de> for StrOrSeq<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = StrOrSeq<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StrOrSeq(Ok(Cow::Borrowed(v))))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrOrSeq(Ok(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(StrOrSeq(Ok(Cow::Owned(v))))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = a.next_element::<Str<'a>>()? {
                    out.push(s.0);
                }
                Ok(StrOrSeq(Err(out)))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A string that borrows from the payload when it can. serde's own `Option<Cow<str>>` always
/// copies (its borrowing of `Cow` applies to a bare `Cow` field only).
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for AudView<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match StrOrSeq::deserialize(d)?.0 {
            Ok(one) => AudView::One(one),
            Err(many) => AudView::Many(many),
        })
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ScpView<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match StrOrSeq::deserialize(d)?.0 {
            Ok(space) => ScpView::Space(space),
            Err(list) => ScpView::List(list),
        })
    }
}

fn owned(c: Option<Str<'_>>) -> Option<String> {
    c.map(|s| s.0.into_owned())
}

impl ActorView<'_> {
    fn into_actor(self) -> Actor {
        Actor {
            sub: owned(self.sub),
            client_id: owned(self.client_id),
            act: self.act.map(|a| Box::new(a.into_actor())),
        }
    }
}

impl<'a> ClaimsView<'a> {
    /// What the checks read, borrowed from this view.
    pub(crate) fn checked(&self) -> Checked<'_> {
        Checked {
            iss: self.iss.as_deref(),
            sub: self.sub.as_deref(),
            client_id: self.client_id.as_deref(),
            jti: self.jti.as_deref(),
            scope: self.scope.as_deref(),
            jkt: self.cnf.as_ref().and_then(|c| c.jkt.as_deref()),
            aud: match &self.aud {
                None => AudRef::None,
                Some(AudView::One(a)) => AudRef::One(a),
                Some(AudView::Many(l)) => AudRef::Many(l),
            },
            exp: self.exp,
            nbf: self.nbf,
            iat: self.iat,
            scp: match &self.scp {
                None => ScpRef::None,
                Some(ScpView::Space(s)) => ScpRef::Space(s),
                Some(ScpView::List(_)) => ScpRef::List,
            },
            single_use: self.single_use,
        }
    }

    /// The owned claims, for [`crate::Grant::registered`].
    pub(crate) fn into_claims(self) -> Claims {
        Claims {
            iss: owned(self.iss),
            sub: owned(self.sub),
            aud: self.aud.map(|a| match a {
                AudView::One(a) => Audience::One(a.into_owned()),
                AudView::Many(l) => Audience::Many(l.into_iter().map(Cow::into_owned).collect()),
            }),
            exp: self.exp,
            nbf: self.nbf,
            iat: self.iat,
            jti: owned(self.jti),
            client_id: owned(self.client_id),
            scope: owned(self.scope),
            scp: self.scp.map(|s| match s {
                ScpView::List(l) => ScpClaim::List(l.into_iter().map(Cow::into_owned).collect()),
                ScpView::Space(s) => ScpClaim::Space(s.into_owned()),
            }),
            cnf: self.cnf.map(|c| Confirmation { jkt: owned(c.jkt) }),
            act: self.act.map(ActorView::into_actor),
            single_use: self.single_use,
        }
    }
}

/// What the checks and the grant read from the claims, borrowed: from the payload itself when
/// the flat scanner could read it, from a [`ClaimsView`] otherwise. Plain data (no drop, no
/// owned strings), so the common case builds nothing but this.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked<'a> {
    pub iss: Option<&'a str>,
    pub sub: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub jti: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub jkt: Option<&'a str>,
    pub aud: AudRef<'a>,
    pub exp: Option<UnixTime>,
    pub nbf: Option<UnixTime>,
    pub iat: Option<UnixTime>,
    pub scp: ScpRef<'a>,
    pub single_use: Option<bool>,
}

/// `aud`, borrowed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AudRef<'a> {
    #[default]
    None,
    One(&'a str),
    Many(&'a [Cow<'a, str>]),
}

/// `scp`, borrowed: its text when it is one space-delimited string.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScpRef<'a> {
    #[default]
    None,
    Space(&'a str),
    List,
}

/// A claim name as three bytes in one word, for [`claim_index`].
const fn word3(name: &[u8; 3]) -> u32 {
    name[0] as u32 | (name[1] as u32) << 8 | (name[2] as u32) << 16
}

/// The slot of a claim [`Checked::parse_flat`] knows: iss sub jti client_id scope aud scp, then
/// exp nbf iat, then single_use cnf act. Ten of the names are three bytes long; they are told
/// apart by comparing one integer each instead of a string each.
fn claim_index(key: &str) -> Option<usize> {
    const ISS: u32 = word3(b"iss");
    const SUB: u32 = word3(b"sub");
    const JTI: u32 = word3(b"jti");
    const AUD: u32 = word3(b"aud");
    const SCP: u32 = word3(b"scp");
    const EXP: u32 = word3(b"exp");
    const NBF: u32 = word3(b"nbf");
    const IAT: u32 = word3(b"iat");
    const CNF: u32 = word3(b"cnf");
    const ACT: u32 = word3(b"act");
    match *key.as_bytes() {
        [a, b, c] => match word3(&[a, b, c]) {
            ISS => Some(0),
            SUB => Some(1),
            JTI => Some(2),
            AUD => Some(5),
            SCP => Some(6),
            EXP => Some(7),
            NBF => Some(8),
            IAT => Some(9),
            CNF => Some(11),
            ACT => Some(12),
            _ => None,
        },
        _ => match key {
            "client_id" => Some(3),
            "scope" => Some(4),
            "single_use" => Some(10),
            _ => None,
        },
    }
}

impl<'a> Checked<'a> {
    /// What serde_json would build, for a flat payload whose every known field has the type
    /// serde_json would accept; `None` for anything else (the caller then asks serde_json).
    pub(crate) fn parse_flat(payload: &'a str) -> Option<Self> {
        use flat_json::Value;
        // One slot per known claim, filled by kind: a few compact paths instead of one inlined
        // path per claim, since after a signature check every line of code here is a cache miss.
        let mut strs: [Option<&'a str>; 7] = [None; 7]; // iss sub jti client_id scope aud scp
        let mut nums: [Option<UnixTime>; 3] = [None; 3]; // exp nbf iat
        let mut single_use = None;
        let mut seen = 0u32;
        flat_json::scan(payload, |key, val| {
            let Some(k) = claim_index(key) else {
                return Some(());
            };
            // serde_json refuses a known field twice, even after a null.
            if seen & (1 << k) != 0 {
                return None;
            }
            seen |= 1 << k;
            match (k, val) {
                // Every known claim is optional: null is its absence. `cnf` and `act` are
                // objects, which never fit the flat subset; only their null does.
                (_, Value::Null) => {}
                (0..=6, Value::Str(s)) => *strs.get_mut(k)? = Some(s),
                (7..=9, Value::UInt(n)) => *nums.get_mut(k - 7)? = Some(n),
                (10, Value::Bool(b)) => single_use = Some(b),
                _ => return None,
            }
            Some(())
        })?;
        let [iss, sub, jti, client_id, scope, aud, scp] = strs;
        let [exp, nbf, iat] = nums;
        Some(Checked {
            iss,
            sub,
            client_id,
            jti,
            scope,
            jkt: None,
            aud: aud.map_or(AudRef::None, AudRef::One),
            exp,
            nbf,
            iat,
            scp: scp.map_or(ScpRef::None, ScpRef::Space),
            single_use,
        })
    }

    /// Whether `aud` names one of the audiences `accept` accepts; `None` without `aud`.
    pub(crate) fn audience_matches(&self, accept: impl Fn(&str) -> bool) -> Option<bool> {
        match self.aud {
            AudRef::None => None,
            AudRef::One(a) => Some(accept(a)),
            AudRef::Many(list) => Some(list.iter().any(|a| accept(a))),
        }
    }

    /// The owned claims of a flat payload (which has no `cnf`, `act` or `scp` list).
    fn into_flat_claims(self) -> Claims {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        Claims {
            iss: owned(self.iss),
            sub: owned(self.sub),
            aud: match self.aud {
                AudRef::None => None,
                AudRef::One(a) => Some(Audience::One(a.to_owned())),
                AudRef::Many(l) => Some(Audience::Many(l.iter().map(|a| a.to_string()).collect())),
            },
            exp: self.exp,
            nbf: self.nbf,
            iat: self.iat,
            jti: owned(self.jti),
            client_id: owned(self.client_id),
            scope: owned(self.scope),
            scp: match self.scp {
                ScpRef::Space(s) => Some(ScpClaim::Space(s.to_owned())),
                ScpRef::None | ScpRef::List => None,
            },
            cnf: None,
            act: None,
            single_use: self.single_use,
        }
    }
}

/// The owned claims of a payload, for [`crate::Grant::registered`]: by the flat scanner when
/// it can read them, by serde_json otherwise; the same parsers the checks used.
pub(crate) fn claims_of(payload: &str) -> Result<Claims, serde_json::Error> {
    match Checked::parse_flat(payload) {
        Some(c) => Ok(c.into_flat_claims()),
        None => serde_json::from_str::<ClaimsView<'_>>(payload).map(ClaimsView::into_claims),
    }
}

/// A string a [`crate::Grant`] keeps from the payload without copying it when it can.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Text {
    /// The claim is absent.
    #[default]
    None,
    /// Bytes `start..end` of the payload (a string JSON did not escape).
    Range(u32, u32),
    /// A string whose JSON escapes made it differ from the payload bytes.
    Owned(Box<str>),
}

impl Text {
    /// Remembers `value`, a string parsed from `payload`: as a range when it is a piece of
    /// the payload (the same address and length, so no comparison is needed), else as a copy
    /// (a string whose JSON escapes made it differ from the bytes).
    // Out of line: six inlined copies cost more in instruction-cache misses after a
    // signature check than the calls do.
    #[inline(never)]
    pub(crate) fn of(payload: &str, value: Option<&str>) -> Text {
        let Some(s) = value else {
            return Text::None;
        };
        let start = (s.as_ptr() as usize).wrapping_sub(payload.as_ptr() as usize);
        let end = start.wrapping_add(s.len());
        match (u32::try_from(start), u32::try_from(end)) {
            (Ok(a), Ok(b)) if payload.get(start..end).is_some_and(|p| std::ptr::eq(p, s)) => {
                Text::Range(a, b)
            }
            _ => Text::Owned(s.into()),
        }
    }

    /// The text, read from `payload` for a range.
    pub(crate) fn get<'a>(&'a self, payload: &'a str) -> Option<&'a str> {
        match self {
            Text::None => None,
            Text::Range(a, b) => payload.get(*a as usize..*b as usize),
            Text::Owned(s) => Some(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_copies_escaped_ones() {
        let payload = r#"{"iss":"https://i","sub":"a\"b","aud":["x","y"],"scp":["s1"],"scope":"s2 s3"}"#;
        let v: ClaimsView<'_> = serde_json::from_str(payload).unwrap();
        assert!(matches!(
            v.iss.as_ref().map(|s| &s.0),
            Some(Cow::Borrowed("https://i"))
        ));
        let c = v.checked();
        assert_eq!(c.sub, Some("a\"b"));
        let iss = Text::of(payload, c.iss);
        let sub = Text::of(payload, c.sub);
        assert!(matches!(iss, Text::Range(..)));
        assert!(matches!(sub, Text::Owned(_)));
        assert_eq!(iss.get(payload), Some("https://i"));
        assert_eq!(sub.get(payload), Some("a\"b"));
        assert_eq!(c.audience_matches(|a| a == "y"), Some(true));
        assert_eq!(c.scp, ScpRef::List);
        // The flat scanner leaves escapes and arrays to serde_json.
        assert_eq!(Checked::parse_flat(payload), None);
    }

    #[test]
    fn owned_claims_match_the_serde_claims() {
        let payload = br#"{"iss":"i","sub":"s","aud":"a","exp":10,"nbf":1,"iat":2,"jti":"j",
            "client_id":"c","scope":"x y","scp":"z","cnf":{"jkt":"k"},
            "act":{"sub":"a1","act":{"client_id":"a2"}},"single_use":true,"extra":[1,{"n":null}]}"#;
        let direct: Claims = serde_json::from_slice(payload).unwrap();
        let ours = claims_of(std::str::from_utf8(payload).unwrap()).unwrap();
        assert_eq!(direct, ours);
    }

    #[test]
    fn wrong_shapes_are_refused_like_claims() {
        for bad in [
            &br#"{"aud":5}"#[..],
            br#"{"exp":"10"}"#,
            br#"{"exp":-1}"#,
            br#"{"iss":"a","iss":"b"}"#,
            br#"{"act":"x"}"#,
            br#"{"scp":[1]}"#,
            br#"5"#,
        ] {
            assert!(
                claims_of(std::str::from_utf8(bad).unwrap()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
            assert!(serde_json::from_slice::<Claims>(bad).is_err());
        }
    }

    fn value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "[a-z :]{0,6}".prop_map(|s| format!("\"{s}\"")),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("-1".to_owned()),
            Just("1.5".to_owned()),
            Just("01".to_owned()),
            Just("\"a\\\"b\"".to_owned()),
            Just("[\"a\",\"b\"]".to_owned()),
            Just("{\"jkt\":\"k\"}".to_owned()),
            Just("{}".to_owned()),
        ]
    }

    #[test]
    fn every_known_claim_has_its_slot_and_nothing_else_has_one() {
        let known = [
            "iss",
            "sub",
            "jti",
            "client_id",
            "scope",
            "aud",
            "scp",
            "exp",
            "nbf",
            "iat",
            "single_use",
            "cnf",
            "act",
        ];
        for (slot, name) in known.iter().enumerate() {
            assert_eq!(claim_index(name), Some(slot), "{name}");
        }
        for name in [
            "",
            "i",
            "is",
            "isx",
            "ssi",
            "Iss",
            "iss ",
            "ac",
            "actx",
            "scop",
            "client_ix",
            "single_use_",
        ] {
            assert_eq!(claim_index(name), None, "{name}");
        }
    }

    proptest::proptest! {
        /// The flat fast path builds exactly what serde_json builds, whenever it answers.
        #[test]
        fn flat_parse_agrees_with_serde(
            members in proptest::collection::vec(
                (proptest::sample::select(vec![
                    "iss", "sub", "jti", "client_id", "scope", "exp", "nbf", "iat", "aud", "scp",
                    "single_use", "cnf", "act", "other",
                    // Near misses of the names above, which must be ignored like "other".
                    "isx", "Iss", "is", "jtis", "scopes", "client_i", "single_usf", "cnd",
                ]), value(), proptest::sample::select(vec!["", " ", "\n\t "])),
                0..8,
            )
        ) {
            let body: Vec<String> = members
                .iter()
                .map(|(k, v, ws)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
                .collect();
            let json = format!("{{{}}}", body.join(","));
            let serde: Result<ClaimsView<'_>, _> = serde_json::from_str(&json);
            if let Some(flat) = Checked::parse_flat(&json) {
                let serde = serde.expect("serde_json accepts what the fast path accepts");
                // The same fields, borrowed from the same bytes, so the same grant…
                proptest::prop_assert_eq!(flat, serde.checked());
                proptest::prop_assert_eq!(
                    crate::grant::Fields::of(&json, &flat),
                    crate::grant::Fields::of(&json, &serde.checked())
                );
                // …and the same owned claims.
                proptest::prop_assert_eq!(flat.into_flat_claims(), serde.into_claims());
            }
            // And the public entry point answers like serde_json either way.
            let ours = claims_of(&json).ok();
            let theirs = serde_json::from_slice::<Claims>(json.as_bytes()).ok();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }
}
