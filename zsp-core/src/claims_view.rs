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
    /// Parses the decoded payload: the flat common case by [`flat_json`], anything else by
    /// serde_json.
    pub(crate) fn parse(payload: &'a str) -> Result<Self, serde_json::Error> {
        match Self::parse_flat(payload) {
            Some(v) => Ok(v),
            None => serde_json::from_str(payload),
        }
    }

    /// What serde_json would build, for a flat payload whose every known field has the type
    /// serde_json would accept; `None` for anything else.
    fn parse_flat(payload: &'a str) -> Option<Self> {
        use flat_json::{Value, once};
        let mut v = ClaimsView::default();
        let mut seen = 0u32;
        let str_of = |val: Value<'a>| match val {
            Value::Str(s) => Some(Some(Str(Cow::Borrowed(s)))),
            Value::Null => Some(None),
            _ => None,
        };
        let uint_of = |val: Value<'a>| match val {
            Value::UInt(n) => Some(Some(n)),
            Value::Null => Some(None),
            _ => None,
        };
        flat_json::scan(payload, |key, val| match key {
            "iss" => once(&mut seen, 1, &mut v.iss, str_of(val)?),
            "sub" => once(&mut seen, 1 << 1, &mut v.sub, str_of(val)?),
            "jti" => once(&mut seen, 1 << 2, &mut v.jti, str_of(val)?),
            "client_id" => once(&mut seen, 1 << 3, &mut v.client_id, str_of(val)?),
            "scope" => once(&mut seen, 1 << 4, &mut v.scope, str_of(val)?),
            "exp" => once(&mut seen, 1 << 5, &mut v.exp, uint_of(val)?),
            "nbf" => once(&mut seen, 1 << 6, &mut v.nbf, uint_of(val)?),
            "iat" => once(&mut seen, 1 << 7, &mut v.iat, uint_of(val)?),
            "aud" => {
                let aud = str_of(val)?.map(|s| AudView::One(s.0));
                once(&mut seen, 1 << 8, &mut v.aud, aud)
            }
            "scp" => {
                let scp = str_of(val)?.map(|s| ScpView::Space(s.0));
                once(&mut seen, 1 << 9, &mut v.scp, scp)
            }
            "single_use" => {
                let b = match val {
                    Value::Bool(b) => Some(b),
                    Value::Null => None,
                    _ => return None,
                };
                once(&mut seen, 1 << 10, &mut v.single_use, b)
            }
            // Objects never fit the flat subset; only their absence (null) does.
            "cnf" => once(
                &mut seen,
                1 << 11,
                &mut v.cnf,
                (val == Value::Null).then_some(None)?,
            ),
            "act" => once(
                &mut seen,
                1 << 12,
                &mut v.act,
                (val == Value::Null).then_some(None)?,
            ),
            _ => Some(()),
        })?;
        Some(v)
    }

    /// Whether `aud` names one of the audiences `accept` accepts.
    pub(crate) fn audience_matches(&self, accept: impl Fn(&str) -> bool) -> Option<bool> {
        Some(match self.aud.as_ref()? {
            AudView::One(a) => accept(a),
            AudView::Many(list) => list.iter().any(|a| accept(a)),
        })
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

/// A string a [`crate::Grant`] keeps from the payload without copying it when it can.
#[derive(Debug, Clone, Default)]
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
    /// Remembers `value`, a string parsed from `payload`.
    pub(crate) fn of(payload: &str, value: Option<&Str<'_>>) -> Text {
        match value.map(|s| &s.0) {
            None => Text::None,
            Some(Cow::Borrowed(s)) => {
                // serde_json and the flat scanner hand out borrowed strings only as sub-slices
                // of their input.
                let base = payload.as_ptr() as usize;
                let start = (s.as_ptr() as usize).wrapping_sub(base);
                let end = start.wrapping_add(s.len());
                match (u32::try_from(start), u32::try_from(end)) {
                    // The same address and length: the very bytes, no comparison needed.
                    (Ok(a), Ok(b)) if payload.get(start..end).is_some_and(|p| std::ptr::eq(p, &**s)) => {
                        Text::Range(a, b)
                    }
                    _ => Text::Owned((*s).into()),
                }
            }
            Some(Cow::Owned(s)) => Text::Owned(s.as_str().into()),
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
        let v = ClaimsView::parse(payload).unwrap();
        assert!(matches!(
            v.iss.as_ref().map(|s| &s.0),
            Some(Cow::Borrowed("https://i"))
        ));
        assert!(matches!(v.sub.as_deref(), Some("a\"b")));
        let iss = Text::of(payload, v.iss.as_ref());
        let sub = Text::of(payload, v.sub.as_ref());
        assert!(matches!(iss, Text::Range(..)));
        assert!(matches!(sub, Text::Owned(_)));
        assert_eq!(iss.get(payload), Some("https://i"));
        assert_eq!(sub.get(payload), Some("a\"b"));
        assert_eq!(v.audience_matches(|a| a == "y"), Some(true));
    }

    #[test]
    fn owned_claims_match_the_serde_claims() {
        let payload = br#"{"iss":"i","sub":"s","aud":"a","exp":10,"nbf":1,"iat":2,"jti":"j",
            "client_id":"c","scope":"x y","scp":"z","cnf":{"jkt":"k"},
            "act":{"sub":"a1","act":{"client_id":"a2"}},"single_use":true,"extra":[1,{"n":null}]}"#;
        let direct: Claims = serde_json::from_slice(payload).unwrap();
        let via_view = ClaimsView::parse(std::str::from_utf8(payload).unwrap())
            .unwrap()
            .into_claims();
        assert_eq!(direct, via_view);
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
                ClaimsView::parse(std::str::from_utf8(bad).unwrap()).is_err(),
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

    proptest::proptest! {
        /// The flat fast path builds exactly what serde_json builds, whenever it answers.
        #[test]
        fn flat_parse_agrees_with_serde(
            members in proptest::collection::vec(
                (proptest::sample::select(vec![
                    "iss", "sub", "jti", "client_id", "scope", "exp", "nbf", "iat", "aud", "scp",
                    "single_use", "cnf", "act", "other",
                ]), value(), proptest::sample::select(vec!["", " ", "\n\t "])),
                0..8,
            )
        ) {
            let body: Vec<String> = members
                .iter()
                .map(|(k, v, ws)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
                .collect();
            let json = format!("{{{}}}", body.join(","));
            let serde: Result<ClaimsView<'_>, _> = serde_json::from_slice(json.as_bytes());
            if let Some(flat) = ClaimsView::parse_flat(&json) {
                let serde = serde.expect("serde_json accepts what the fast path accepts");
                proptest::prop_assert_eq!(flat.into_claims(), serde.into_claims());
            }
            // And the public entry point answers like serde_json either way.
            let ours = ClaimsView::parse(&json).map(ClaimsView::into_claims).ok();
            let theirs = serde_json::from_slice::<Claims>(json.as_bytes()).ok();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }
}
