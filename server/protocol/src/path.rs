//! Path rules for file paths inside a user's SyncSphere folder.
//!
//! A path is relative, `/`-separated, normalised to Unicode NFC, and each segment is a name that
//! every supported OS can hold. The server rejects anything else before writing; the client uses
//! the same rules to decide what it can sync (and reports, never renames, what it cannot).
//!
//! Rejected, with the reason in [`PathError`]:
//! - empty paths, absolute paths (`/…`), empty segments (`a//b`, `a/`), `.` and `..` segments;
//! - NUL and every other control character (U+0000–U+001F, U+007F–U+009F);
//! - `\` (Windows' separator) and the characters Windows forbids in names: `< > : " | ? *`;
//! - names ending in a space or a dot (Windows silently strips them, so `a.` and `a` collide);
//! - Windows device names, alone or with any extension, in any case: `CON`, `PRN`, `AUX`, `NUL`,
//!   `COM0`–`COM9`, `LPT0`–`LPT9` (also with superscript digits `¹²³`), e.g. `aux.txt`, `Con`;
//! - names over 255 bytes, paths over 4096 bytes (UTF-8, after NFC).

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
    #[error("'{0}' is not allowed in names (Windows forbids < > : \" | ? *)")]
    ForbiddenCharacter(char),
    #[error("a name must not end with a space or a dot")]
    TrailingSpaceOrDot,
    #[error("'{0}' is a reserved device name on Windows")]
    ReservedName(String),
}

/// Windows device names (compared case-insensitively, before the first dot).
const RESERVED: [&str; 4] = ["CON", "PRN", "AUX", "NUL"];

fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_uppercase();
    if RESERVED.contains(&upper.as_str()) {
        return true;
    }
    let mut chars = upper.chars();
    let prefix: String = chars.by_ref().take(3).collect();
    let rest: Vec<char> = chars.collect();
    (prefix == "COM" || prefix == "LPT")
        && rest.len() == 1
        && (rest[0].is_ascii_digit() || matches!(rest[0], '¹' | '²' | '³'))
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
            s => {
                if let Some(c) = s.chars().find(|c| "<>:\"|?*".contains(*c)) {
                    return Err(PathError::ForbiddenCharacter(c));
                }
                if s.ends_with(' ') || s.ends_with('.') {
                    return Err(PathError::TrailingSpaceOrDot);
                }
                if is_reserved(s) {
                    return Err(PathError::ReservedName(s.to_owned()));
                }
            }
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
        // Near misses of the Windows rules are fine.
        for ok in [
            "console.txt",
            "auxiliary",
            "com10",
            "lpt",
            "nul-byte.md",
            ".hidden",
            "a .b",
        ] {
            check(ok, Ok(ok));
        }
    }

    #[test]
    fn rejects_names_windows_cannot_hold() {
        for c in ['<', '>', ':', '"', '|', '?', '*'] {
            check(&format!("a{c}b"), Err(PathError::ForbiddenCharacter(c)));
        }
        check("dir /x", Err(PathError::TrailingSpaceOrDot));
        check("name.", Err(PathError::TrailingSpaceOrDot));
        for name in [
            "CON",
            "con",
            "Aux",
            "aux.txt",
            "NUL.tar.gz",
            "com1",
            "LPT9.log",
            "COM¹",
            "prn ",
        ] {
            assert!(
                matches!(
                    normalize_path(&format!("d/{name}")),
                    Err(PathError::ReservedName(_)) | Err(PathError::TrailingSpaceOrDot)
                ),
                "{name} accepted"
            );
        }
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
