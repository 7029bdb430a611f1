//! [`ContentHash`]: a content's id, as the wire carries it and the client's trees hold it — the
//! SHA-256 of its bytes, or for a content over [`CHUNKED_ID_ABOVE`] the fold of its chunks'
//! SHA-256s ([`chunked_content_id`], decision 0051): each side then hashes every byte once.

use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::api::SINGLE_REQUEST_MAX;

/// How a chunked content id is written: this prefix, then 64 lowercase hex digits.
pub const CHUNKED_ID_PREFIX: &str = "cdc1-";

/// Contents larger than this many bytes have a chunked id ([`chunked_content_id`]); those up
/// to it (sent in one request, or inline) the SHA-256 of their bytes. Size alone decides, so
/// equal bytes always have equal ids.
pub const CHUNKED_ID_ABOVE: u64 = SINGLE_REQUEST_MAX;

/// What a chunked id hashes before the content's size and its chunks' hashes.
const CHUNKED_ID_TAG: &[u8] = b"syncsphere-content-v1\0";

/// The id of a content of `size` bytes (over [`CHUNKED_ID_ABOVE`]) that the protocol's chunker
/// (`api::CHUNK_*`) cuts into chunks with these SHA-256s, in order: the SHA-256 of a tag, the
/// size (u64, little-endian) and the chunk hashes, written with [`CHUNKED_ID_PREFIX`] so that
/// it never reads as any content's SHA-256. Whoever holds the chunk list (a client that has
/// just cut and hashed the file, the server whose chunks were each verified as stored, a
/// receiver that checked each chunk it wrote) gets the id without reading a byte again.
pub fn chunked_content_id<'a>(
    size: u64,
    chunk_hashes: impl IntoIterator<Item = &'a [u8; 32]>,
) -> ContentHash {
    let mut h = Sha256::new();
    h.update(CHUNKED_ID_TAG);
    h.update(size.to_le_bytes());
    for c in chunk_hashes {
        h.update(c);
    }
    ContentHash::Chunked(h.finalize().into())
}

/// A file content's id: SHA-256 as 64 lowercase hex digits (or a chunked id: `cdc1-` and 64
/// hex digits), which is how the server and the client write it, kept as its 32 bytes (the trees hold one per file in each of several
/// copies: text would be 24 bytes plus an 80-byte allocation each). Any other text (tests use
/// short names; a damaged row) is kept as it is, so a hash reads back exactly as it was given
/// and two hashes are equal exactly when their texts are.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum ContentHash {
    /// 64 lowercase hex digits, as bytes.
    Sha256([u8; 32]),
    /// [`CHUNKED_ID_PREFIX`] and 64 lowercase hex digits, as bytes ([`chunked_content_id`]).
    Chunked([u8; 32]),
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
        if let Some(bytes) = parse_sha256(text) {
            return ContentHash::Sha256(bytes);
        }
        match text.strip_prefix(CHUNKED_ID_PREFIX).and_then(parse_sha256) {
            Some(bytes) => ContentHash::Chunked(bytes),
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
            ContentHash::Sha256(bytes) => write_hex(f, bytes),
            ContentHash::Chunked(bytes) => {
                f.write_str(CHUNKED_ID_PREFIX)?;
                write_hex(f, bytes)
            }
            ContentHash::Text(text) => f.write_str(text),
        }
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8; 32]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
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
                f.write_str("a content id as text")
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

    /// Whether this is a chunked id ([`chunked_content_id`]).
    pub fn is_chunked(&self) -> bool {
        matches!(self, ContentHash::Chunked(_))
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
            ContentHash::Chunked(bytes) => {
                other.strip_prefix(CHUNKED_ID_PREFIX).and_then(parse_sha256) == Some(*bytes)
            }
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
            (ContentHash::Sha256(a), ContentHash::Sha256(b))
            | (ContentHash::Chunked(a), ContentHash::Chunked(b)) => a.cmp(b),
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
    fn a_chunked_id_is_kept_as_bytes_and_reads_back_as_given() {
        let text = format!("{CHUNKED_ID_PREFIX}{EMPTY}");
        let h = ContentHash::from(text.as_str());
        assert!(h.is_chunked() && !h.is_sha256());
        assert_eq!(h.to_string(), text);
        assert_eq!(h, text);
        assert_ne!(h, ContentHash::from(EMPTY));
        assert_eq!(
            serde_json::from_str::<ContentHash>(&format!("{text:?}")).unwrap(),
            h
        );
        let (below, above) = (ContentHash::from("cdc0"), ContentHash::from(EMPTY));
        assert!(below < h && h < above, "ordered as text");
        for other in [
            format!("{CHUNKED_ID_PREFIX}{}", &EMPTY[1..]),
            format!("cdc2-{EMPTY}"),
            format!("{CHUNKED_ID_PREFIX}{}", EMPTY.to_uppercase()),
        ] {
            assert!(matches!(
                ContentHash::from(other.as_str()),
                ContentHash::Text(_)
            ));
        }
    }

    #[test]
    fn a_chunked_id_folds_the_size_and_every_chunk_in_order() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let id = chunked_content_id(10, [&a, &b]);
        assert!(id.is_chunked());
        assert_eq!(id, chunked_content_id(10, [&a, &b]));
        assert_ne!(id, chunked_content_id(10, [&b, &a]));
        assert_ne!(id, chunked_content_id(11, [&a, &b]));
        assert_ne!(id, chunked_content_id(10, [&a]));
        assert_ne!(id, chunked_content_id(10, [&a, &b, &b]));
        // Pinned: clients and servers of every version must compute the same id.
        let mut tagged = b"syncsphere-content-v1\0".to_vec();
        tagged.extend(10u64.to_le_bytes());
        tagged.extend(a);
        tagged.extend(b);
        let expected: [u8; 32] = Sha256::digest(&tagged).into();
        assert_eq!(id, ContentHash::Chunked(expected));
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
