//! Path rules for file paths inside a user's SyncSphere folder.
//!
//! A path is relative, `/`-separated, normalised to Unicode NFC, and each segment is a name that
//! every supported OS can hold. The server rejects anything else before writing; the client uses
//! the same rules to decide what it can sync.

use unicode_normalization::UnicodeNormalization;

/// Longest accepted path, in bytes of UTF-8 after normalisation.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted single name, in bytes of UTF-8 (ext4's and most filesystems' limit).
pub const MAX_NAME_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path must be relative (no leading '/')")]
    Absolute,
    #[error("path has an empty segment ('//' or a trailing '/')")]
    EmptySegment,
    #[error("path segment '.' or '..' is not allowed")]
    DotSegment,
    #[error("path contains a NUL or control character")]
    ControlCharacter,
    #[error("path contains a backslash; use '/' as the separator")]
    Backslash,
    #[error("path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("a name in the path is longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong,
}

/// Validates `raw` and returns it normalised to NFC.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if raw.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if raw.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    if raw.contains('\\') {
        return Err(PathError::Backslash);
    }
    let normalized: String = raw.nfc().collect();
    if normalized.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    for segment in normalized.split('/') {
        match segment {
            "" => return Err(PathError::EmptySegment),
            "." | ".." => return Err(PathError::DotSegment),
            s if s.len() > MAX_NAME_BYTES => return Err(PathError::NameTooLong),
            _ => {}
        }
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, PathError>) {
        assert_eq!(
            normalize_path(input),
            expected.map(str::to_owned),
            "input {input:?}"
        );
    }

    #[test]
    fn accepts_and_normalises_ordinary_paths() {
        check("a.txt", Ok("a.txt"));
        check("dir/sub/report final.pdf", Ok("dir/sub/report final.pdf"));
        check("emoji 🎉/naïve.txt", Ok("emoji 🎉/naïve.txt"));
        // "e" + combining acute accent becomes the precomposed "é".
        check("cafe\u{301}.txt", Ok("caf\u{e9}.txt"));
    }

    #[test]
    fn rejects_every_bad_shape() {
        check("", Err(PathError::Empty));
        check("/etc/passwd", Err(PathError::Absolute));
        check("a//b", Err(PathError::EmptySegment));
        check("a/", Err(PathError::EmptySegment));
        check("../x", Err(PathError::DotSegment));
        check("a/./b", Err(PathError::DotSegment));
        check("a/..", Err(PathError::DotSegment));
        check("a\0b", Err(PathError::ControlCharacter));
        check("a\nb", Err(PathError::ControlCharacter));
        check("a\u{7f}", Err(PathError::ControlCharacter));
        check("a\\b", Err(PathError::Backslash));
        check(&"x".repeat(256), Err(PathError::NameTooLong));
        check(
            &"abcd/"
                .repeat(1000)
                .trim_end_matches('/')
                .to_owned()
                .replace("abcd", "abcdefgh"),
            Err(PathError::TooLong),
        );
    }
}
