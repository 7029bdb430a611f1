//! The identifiers that cross the wire, each its own type, so that a user id cannot be passed
//! where a file id is meant (`store.delete(user_id, file_id, …)` with the two swapped does not
//! compile). On the wire each is exactly what it wraps (a JSON string or integer).
//!
//! Text ids dereference to `str` for reading; building one from text is explicit
//! (`FileId::from(…)`), which is where a value enters from outside (a URL, a database row).

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize};

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        inline_schema!($name, { "type": "string" });

        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                $name(text)
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                $name(text.to_owned())
            }
        }

        impl From<&String> for $name {
            fn from(text: &String) -> Self {
                $name(text.clone())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }
    };
}

text_id! {
    /// A file's id: chosen by the server at the file's first commit, kept across moves and
    /// renames, never reused.
    FileId
}

text_id! {
    /// A user's id: the `sub` of their tokens (Cognito's user id).
    UserId
}

text_id! {
    /// A device's id, chosen by the device (the built-in provider's `DEVICE_KEY`, or the
    /// client's own id); unique per user.
    DeviceId
}

macro_rules! number_id {
    ($(#[$doc:meta])* $name:ident, minimum $min:literal) => {
        inline_schema!($name, {
            "type": "integer",
            "format": "int64",
            "minimum": $min,
            "maximum": i64::MAX,
        });

        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        /// The one `n` places on.
        impl std::ops::Add<i64> for $name {
            type Output = $name;

            fn add(self, n: i64) -> $name {
                $name(self.0 + n)
            }
        }

        impl PartialEq<i64> for $name {
            fn eq(&self, other: &i64) -> bool {
                self.0 == *other
            }
        }

        impl From<i64> for $name {
            fn from(n: i64) -> Self {
                $name(n)
            }
        }

        impl From<$name> for i64 {
            fn from(n: $name) -> i64 {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        /// Any JSON number without a fraction (JSON Schema's integer: `1.0` is 1); a query
        /// string's decimal digits.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                crate::api::integral::int(d).map($name)
            }
        }
    };
}

number_id! {
    /// A file's revision number: 1 at its first commit, one more per commit.
    Rev, minimum 1
}

number_id! {
    /// A position in a user's change journal: strictly increasing per user; a cursor is the
    /// last position read (0 before the first).
    Seq, minimum 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_what_they_wrap_on_the_wire() {
        let id = FileId::from("f-1");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""f-1""#);
        assert_eq!(serde_json::from_str::<FileId>(r#""f-1""#).unwrap(), id);
        assert_eq!(format!("{id} {id:?}"), r#"f-1 "f-1""#);
        assert_eq!(serde_json::to_string(&Rev(7)).unwrap(), "7");
        assert_eq!(serde_json::from_str::<Seq>("7.0").unwrap(), Seq(7));
        assert!(serde_json::from_str::<Rev>(r#""7""#).is_err());
        assert!(serde_json::from_str::<Rev>("7.5").is_err());
    }

    #[test]
    fn numbers_read_from_a_query_string() {
        #[derive(Deserialize)]
        struct Q {
            rev: Rev,
            seq: Option<Seq>,
        }
        let q: Q = serde_urlencoded::from_str("rev=3&seq=9").unwrap();
        assert_eq!((q.rev, q.seq), (Rev(3), Some(Seq(9))));
        let q: Q = serde_urlencoded::from_str("rev=-3").unwrap();
        assert_eq!((q.rev, q.seq), (Rev(-3), None));
        assert!(serde_urlencoded::from_str::<Q>("rev=x").is_err());
        assert!(serde_urlencoded::from_str::<Q>("rev=1.5").is_err());
    }
}
