//! A file's id as the client keeps it in memory. The server's ids are UUIDs: their 36
//! characters are kept as the 16 bytes they spell (the remote tree holds one per file: text
//! was 24 bytes plus a 48-byte allocation each; decision 0053). Any other text (the
//! simulation's short ids, an id from another server) is kept as given, so an id reads back
//! exactly as it came and two ids are equal exactly when their texts are.

use std::cmp::Ordering;
use std::fmt;

/// A file's id (see the module).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum FileKey {
    /// A UUID in its canonical text (lowercase hex, hyphens at 8, 13, 18 and 23), as bytes.
    Uuid([u8; 16]),
    /// Anything else, as given.
    Text(Box<str>),
}

/// Where a canonical UUID's text has its hyphens.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let b = text.as_bytes();
    if b.len() != 36 || HYPHENS.iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut digits = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !HYPHENS.contains(i))
        .map(|(_, &c)| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        });
    let mut out = [0u8; 16];
    for byte in &mut out {
        *byte = (digits.next()?? << 4) | digits.next()??;
    }
    Some(out)
}

impl FileKey {
    /// The id as text (what the server is sent and the index stores).
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            FileKey::Text(t) => std::borrow::Cow::Borrowed(t),
            FileKey::Uuid(_) => std::borrow::Cow::Owned(self.to_string()),
        }
    }
}

impl From<&str> for FileKey {
    fn from(text: &str) -> Self {
        match parse_uuid(text) {
            Some(bytes) => FileKey::Uuid(bytes),
            None => FileKey::Text(text.into()),
        }
    }
}

impl From<String> for FileKey {
    fn from(text: String) -> Self {
        match parse_uuid(&text) {
            Some(bytes) => FileKey::Uuid(bytes),
            None => FileKey::Text(text.into_boxed_str()),
        }
    }
}

impl From<&String> for FileKey {
    fn from(text: &String) -> Self {
        FileKey::from(text.as_str())
    }
}

impl From<&syncsphere_protocol::FileId> for FileKey {
    fn from(id: &syncsphere_protocol::FileId) -> Self {
        FileKey::from(id.as_str())
    }
}

impl From<&FileKey> for syncsphere_protocol::FileId {
    fn from(key: &FileKey) -> Self {
        syncsphere_protocol::FileId::from(key.to_string())
    }
}

impl fmt::Display for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileKey::Text(t) => f.write_str(t),
            FileKey::Uuid(bytes) => {
                for (i, b) in bytes.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.as_text(), f)
    }
}

impl PartialEq<str> for FileKey {
    fn eq(&self, other: &str) -> bool {
        match self {
            FileKey::Text(t) => **t == *other,
            FileKey::Uuid(bytes) => parse_uuid(other).is_some_and(|o| o == *bytes),
        }
    }
}

impl PartialEq<&str> for FileKey {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

/// The texts' order (a canonical UUID's bytes sort as its text does).
impl Ord for FileKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (FileKey::Uuid(a), FileKey::Uuid(b)) => a.cmp(b),
            (FileKey::Text(a), FileKey::Text(b)) => a.cmp(b),
            _ => self.as_text().cmp(&other.as_text()),
        }
    }
}

impl PartialOrd for FileKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_as_given_and_compare_as_their_texts() {
        // (text, kept as a UUID's bytes)
        let cases = [
            ("48dd0ca9-e1f9-4eac-a836-0e71ac9a494f", true),
            ("00000000-0000-0000-0000-000000000000", true),
            ("ffffffff-ffff-ffff-ffff-ffffffffffff", true),
            ("48DD0CA9-E1F9-4EAC-A836-0E71AC9A494F", false), // not canonical
            ("48dd0ca9e1f94eaca8360e71ac9a494f", false),     // no hyphens
            ("48dd0ca9-e1f9-4eac-a836-0e71ac9a494", false),  // too short
            ("48dd0ca9-e1f9-4eac-a836-0e71ac9a494g", false), // not hex
            ("48dd0ca9-e1f9-4eac-a836+0e71ac9a494f", false), // a hyphen missing
            ("f5", false),
            ("", false),
        ];
        for (t, uuid) in cases {
            let k = FileKey::from(t);
            assert_eq!(matches!(k, FileKey::Uuid(_)), uuid, "{t}");
            assert_eq!(k.to_string(), t);
            assert_eq!(k.as_text(), t);
            assert_eq!(format!("{k:?}"), format!("{t:?}"));
            assert_eq!(k, *t);
            assert_eq!(k, FileKey::from(t.to_owned()));
        }
        for (a, _) in cases {
            for (b, _) in cases {
                let (ka, kb) = (FileKey::from(a), FileKey::from(b));
                assert_eq!(ka.cmp(&kb), a.cmp(b), "{a} {b}");
                assert_eq!(ka == kb, a == b, "{a} {b}");
                assert_eq!(ka == *b, a == b, "{a} {b}");
            }
        }
        assert_eq!(std::mem::size_of::<FileKey>(), 24);
    }
}
