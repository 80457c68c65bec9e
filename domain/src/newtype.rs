//! Newtypes that exist only parsed, for the ids, names and texts of every domain module:
//! [`uuid_id!`] (a UUID, optionally the id of a stream category), [`token!`] (a lowercase
//! ASCII name) and [`text!`] (bounded printable text), and the one error they refuse with,
//! [`TextError`].
//!
//! The macros are written once here so that every domain spells its ids, names and texts
//! the same way — in JSON, in stream ids, in errors — and a new domain does not copy
//! them. They are crate-internal: domain modules live in this crate.

use uuid::Uuid;

use crate::stream::StreamId;

/// Why a name or text given from outside was refused. The refused value is not quoted:
/// many of these texts are personal data, and errors end up in logs and responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{kind} must be 1 to {max} characters: {rule}")]
    Invalid {
        kind: &'static str,
        max: usize,
        rule: &'static str,
    },
}

/// Builds the stream id `<category>-<uuid>`.
pub fn stream_of(category: &str, id: Uuid) -> StreamId {
    // A lowercase category and a hyphenated UUID always satisfy the stream grammar; the
    // tests of each aggregate build and parse its stream id.
    StreamId::parse(&format!("{category}-{}", id.hyphenated()))
        .expect("a lowercase category and a UUID form a valid stream id")
}

/// Reads the UUID back from a stream id of the given category.
pub fn id_of_stream(category: &str, stream: &StreamId) -> Option<Uuid> {
    let rest = stream.as_str().strip_prefix(category)?.strip_prefix('-')?;
    Uuid::parse_str(rest).ok()
}

/// Checks bounded free text: no surrounding white space, no control characters.
pub fn check_text(kind: &'static str, s: &str, max: usize) -> Result<(), TextError> {
    let ok = !s.is_empty()
        && s.chars().count() <= max
        && s.trim() == s
        && !s.chars().any(char::is_control);
    verdict(
        ok,
        kind,
        max,
        "printable text without control characters or surrounding white space",
    )
}

/// Checks a lowercase ASCII token: letters, digits, `-`, `_`, `.`, `:`, starting with a
/// letter or digit.
pub fn check_token(kind: &'static str, s: &str, max: usize) -> Result<(), TextError> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= max
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.' | b':')
        });
    verdict(
        ok,
        kind,
        max,
        "lowercase ASCII letters, digits, '-', '_', '.', ':', starting with a letter or digit",
    )
}

fn verdict(ok: bool, kind: &'static str, max: usize, rule: &'static str) -> Result<(), TextError> {
    if ok {
        Ok(())
    } else {
        Err(TextError::Invalid { kind, max, rule })
    }
}

/// A UUID newtype, serialized as the plain hyphenated UUID. With `stream = "category"`,
/// the id also names a stream of that category, `<category>-<uuid>`: the type gets
/// `CATEGORY`, `stream_id` and `from_stream`.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            ::serde::Serialize, ::serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub ::uuid::Uuid);

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, stream = $category:literal) => {
        $crate::newtype::uuid_id!($(#[$doc])* $name);

        impl $name {
            pub const CATEGORY: &'static str = $category;

            pub fn stream_id(&self) -> $crate::stream::StreamId {
                $crate::newtype::stream_of(Self::CATEGORY, self.0)
            }

            pub fn from_stream(stream: &$crate::stream::StreamId) -> Option<Self> {
                $crate::newtype::id_of_stream(Self::CATEGORY, stream).map(Self)
            }
        }
    };
}
pub(crate) use uuid_id;

/// What [`token!`] and [`text!`] share: a string newtype that exists only checked by
/// `$check`, read back from JSON through the same check.
macro_rules! checked_string {
    ($name:ident, $check:path, $kind:literal, $max:expr) => {
        impl $name {
            pub fn parse(s: &str) -> Result<Self, $crate::newtype::TextError> {
                $check($kind, s, $max).map(|()| Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use checked_string;

/// A lowercase ASCII token newtype (recipients, purposes, versions), checked by
/// [`check_token`]: `token!(Name, "what it is", max_len)`.
macro_rules! token {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        $crate::newtype::checked_string!($name, $crate::newtype::check_token, $kind, $max);

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::newtype::TextError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}
pub(crate) use token;

/// A bounded text newtype validated by [`check_text`]: `text!(Name, "what it is", max)`.
/// Its `Debug` shows the text, so use it for texts that are no personal data, or that are
/// held in [`crate::event::Personal`].
macro_rules! text {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        $crate::newtype::checked_string!($name, $crate::newtype::check_text, $kind, $max);

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}
pub(crate) use text;

#[cfg(test)]
mod tests {
    use super::*;

    uuid_id!(
        /// A sample id.
        SampleId,
        stream = "sample"
    );
    token!(
        /// A sample token.
        SampleToken,
        "sample token",
        8
    );
    text!(
        /// A sample text.
        SampleText,
        "sample text",
        5
    );

    #[test]
    fn ids_name_their_streams() {
        let id = SampleId(Uuid::from_u128(7));
        let stream = id.stream_id();
        assert_eq!(
            stream.as_str(),
            "sample-00000000-0000-0000-0000-000000000007"
        );
        assert_eq!(SampleId::from_stream(&stream), Some(id));
        assert_eq!(
            SampleId::from_stream(&StreamId::parse("other-1").expect("stream")),
            None
        );
        assert_eq!(
            serde_json::to_string(&id).expect("json"),
            "\"00000000-0000-0000-0000-000000000007\""
        );
    }

    #[test]
    fn tokens_and_texts_exist_only_parsed() {
        assert_eq!(
            SampleToken::parse("a-b.c:1").map(|t| t.as_str().to_owned()),
            Ok("a-b.c:1".to_owned())
        );
        for bad in ["", "A", "-a", "a b", "ä", "123456789"] {
            assert!(SampleToken::parse(bad).is_err(), "{bad:?}");
            assert!(serde_json::from_value::<SampleToken>(bad.into()).is_err());
        }
        assert_eq!(
            SampleText::parse("x\ny"),
            Err(TextError::Invalid {
                kind: "sample text",
                max: 5,
                rule: "printable text without control characters or surrounding white space",
            })
        );
        assert_eq!(
            SampleText::parse("fünf!").map(|t| t.as_str().to_owned()),
            Ok("fünf!".to_owned())
        );
        assert!(SampleText::parse("sechs!").is_err());
    }
}
