//! [`ContentHash`]: a content's SHA-256, as the wire carries it and the client's trees hold it.

use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A file content's hash: SHA-256 as 64 lowercase hex digits, which is how the server and the
/// client write it, kept as its 32 bytes (the trees hold one per file in each of several
/// copies: text would be 24 bytes plus an 80-byte allocation each). Any other text (tests use
/// short names; a damaged row) is kept as it is, so a hash reads back exactly as it was given
/// and two hashes are equal exactly when their texts are.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum ContentHash {
    /// 64 lowercase hex digits, as bytes.
    Sha256([u8; 32]),
    /// Anything else, as given.
    Text(Box<str>),
}

impl ContentHash {
    /// The hash as text (what the server is sent and the index stores).
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// 64 lowercase hex digits as their 32 bytes.
fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let b = text.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nibble(b[2 * i])? << 4 | nibble(b[2 * i + 1])?;
    }
    Some(out)
}

impl From<&str> for ContentHash {
    fn from(text: &str) -> Self {
        match parse_sha256(text) {
            Some(bytes) => ContentHash::Sha256(bytes),
            None => ContentHash::Text(text.into()),
        }
    }
}

impl From<String> for ContentHash {
    fn from(text: String) -> Self {
        ContentHash::from(text.as_str())
    }
}

impl From<&String> for ContentHash {
    fn from(text: &String) -> Self {
        ContentHash::from(text.as_str())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentHash::Sha256(bytes) => {
                for b in bytes {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
            ContentHash::Text(text) => f.write_str(text),
        }
    }
}

inline_schema!(ContentHash, { "type": "string" });

/// On the wire: the text.
impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = ContentHash;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a SHA-256 as hex text")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ContentHash, E> {
                Ok(ContentHash::from(v))
            }
        }
        d.deserialize_str(Text)
    }
}

impl ContentHash {
    /// Whether this is a SHA-256 written as 64 lowercase hex digits (what the server accepts
    /// as a content or chunk id).
    pub fn is_sha256(&self) -> bool {
        matches!(self, ContentHash::Sha256(_))
    }

    /// The empty text (a deleted file's hash).
    pub fn is_empty(&self) -> bool {
        matches!(self, ContentHash::Text(t) if t.is_empty())
    }
}

impl Default for ContentHash {
    fn default() -> Self {
        ContentHash::Text("".into())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl PartialEq<str> for ContentHash {
    fn eq(&self, other: &str) -> bool {
        match self {
            ContentHash::Text(text) => **text == *other,
            ContentHash::Sha256(bytes) => parse_sha256(other) == Some(*bytes),
        }
    }
}

impl PartialEq<&str> for ContentHash {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for ContentHash {
    fn eq(&self, other: &String) -> bool {
        *self == *other.as_str()
    }
}

impl PartialEq<ContentHash> for str {
    fn eq(&self, other: &ContentHash) -> bool {
        *other == *self
    }
}

impl PartialEq<ContentHash> for &str {
    fn eq(&self, other: &ContentHash) -> bool {
        *other == **self
    }
}

impl PartialEq<ContentHash> for String {
    fn eq(&self, other: &ContentHash) -> bool {
        *other == *self.as_str()
    }
}

/// The order of the texts (lowercase hex compares as its bytes do).
impl Ord for ContentHash {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (ContentHash::Sha256(a), ContentHash::Sha256(b)) => a.cmp(b),
            (ContentHash::Text(a), ContentHash::Text(b)) => a.cmp(b),
            _ => self.to_string().cmp(&other.to_string()),
        }
    }
}

impl PartialOrd for ContentHash {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn a_sha256_is_kept_as_bytes_and_reads_back_as_given() {
        let h = ContentHash::from(EMPTY);
        assert!(matches!(h, ContentHash::Sha256(_)));
        assert_eq!(h.to_string(), EMPTY);
        assert_eq!(h, EMPTY);
        assert_eq!(format!("{h:?}"), format!("{EMPTY:?}"));
        assert!(std::mem::size_of::<ContentHash>() <= 40);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("{EMPTY:?}"));
        assert_eq!(serde_json::from_str::<ContentHash>(&json).unwrap(), h);
        assert!(serde_json::from_str::<ContentHash>("3").is_err());
    }

    #[test]
    fn other_text_is_kept_as_it_is_and_equal_only_to_itself() {
        for text in [
            "",
            "h1",
            &EMPTY.to_uppercase(),
            &EMPTY[..63],
            &format!("{EMPTY}0"),
            &format!("g{}", &EMPTY[1..]),
        ] {
            let h = ContentHash::from(text);
            assert!(matches!(h, ContentHash::Text(_)), "{text}");
            assert_eq!(h.to_string(), text);
            assert_eq!(h, text);
            assert_ne!(h, ContentHash::from(EMPTY));
        }
    }

    #[test]
    fn hashes_order_as_their_texts() {
        let texts = [
            EMPTY.to_owned(),
            "0".repeat(64),
            "f".repeat(64),
            "a".into(),
            "zz".into(),
            format!("{}1", "0".repeat(63)),
            "".into(),
        ];
        for a in &texts {
            for b in &texts {
                let (ha, hb) = (ContentHash::from(a), ContentHash::from(b));
                assert_eq!(ha.cmp(&hb), a.cmp(b), "{a} {b}");
                assert_eq!(ha == hb, a == b);
            }
        }
    }
}
