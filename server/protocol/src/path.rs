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
//!
//! [`path_key`] is the other half of the namespace: two live paths of a user may not have the
//! same key (see `docs/decisions/0001-path-key-case-folding.md`).

use caseless::Caseless;
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

/// The key under which live paths must be unique: two paths with one key are one name on some
/// case-insensitive disk, so they cannot both live.
///
/// Unicode canonical caseless matching (D145): NFD, full default case folding, then NFC to keep
/// keys short — what APFS's case-insensitive variant compares (full folding, normalisation
/// insensitive), and a superset of NTFS's `$UpCase` tables (one-to-one upper-casing, e.g. `ς`
/// and `σ` are `Σ`). Stricter than NTFS where folding is full (`ß` = `ss`); the Turkic
/// mappings are not used (`ı` is not `i`), as neither file system uses them. A key is a path of
/// keys: `path_key("a/b") == path_key("a") + "/" + path_key("b")`, which the server's folder
/// ranges rely on.
pub fn path_key(path: &str) -> String {
    if path.is_ascii() {
        return path.to_ascii_lowercase();
    }
    path.nfd().default_case_fold().nfc().collect()
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

    /// Pairs that are one name on NTFS or APFS have one key; pairs neither folds keep two.
    fn same_key(a: &str, b: &str, same: bool) {
        assert_eq!(
            path_key(a) == path_key(b),
            same,
            "{a:?} → {:?}, {b:?} → {:?}",
            path_key(a),
            path_key(b)
        );
    }

    #[test]
    fn keys_fold_like_case_insensitive_file_systems() {
        // Final and medial sigma: `to_lowercase` kept these apart.
        same_key("οδος.txt", "ΟΔΟΣ.txt", true);
        same_key("οδος.txt", "οδοσ.txt", true);
        same_key("ΟΔΟΣ.txt", "οδοσ.txt", true);
        same_key("ΟΔΟΣ/σ", "οδος/Σ", true);
        // Full folding (APFS): ß, ẞ and ss are one name.
        same_key("straße.txt", "STRASSE.txt", true);
        same_key("straße.txt", "strasse.txt", true);
        same_key("STRAẞE.txt", "straße.txt", true);
        same_key("ﬁle", "FILE", true);
        // Kelvin sign and ohm sign (NFC makes them K and Ω already), long s.
        same_key("\u{212A}elvin", "kelvin", true);
        same_key("\u{2126}", "ω", true);
        same_key("ſ", "s", true);
        // Canonically equivalent spellings, composed or not.
        same_key("Cafe\u{301}", "café", true);
        same_key("\u{130}", "i\u{307}", true);
        // Turkish i is not special: I is i, but neither İ nor ı is i.
        same_key("I.txt", "i.txt", true);
        same_key("\u{130}.txt", "i.txt", false);
        same_key("\u{131}.txt", "i.txt", false);
        same_key("\u{131}.txt", "I.txt", false);
        // Different letters stay different.
        same_key("a.txt", "b.txt", false);
        same_key("ß", "s", false);
    }

    #[test]
    fn keys_of_plain_paths() {
        for (path, key) in [
            ("docs/report-2026.txt", "docs/report-2026.txt"),
            ("Docs/README.md", "docs/readme.md"),
            ("ΟΔΟΣ.txt", "οδοσ.txt"),
            ("Straße", "strasse"),
            ("Ǆ", "ǆ"),
        ] {
            assert_eq!(path_key(path), key, "{path:?}");
            assert_eq!(path_key(key), key, "a key is its own key: {key:?}");
        }
        // The ASCII shortcut gives what the full algorithm gives.
        for c in (b' '..=b'~').map(char::from) {
            let full: String = c.to_string().nfd().default_case_fold().nfc().collect();
            assert_eq!(path_key(&c.to_string()), full, "{c:?}");
        }
    }

    /// NTFS compares names by a one-to-one upper-casing of each UTF-16 unit, drawn from
    /// Unicode's: every such pair has one key. The one exception is `ı` → `I`, which no
    /// `$UpCase` table has (Windows keeps `ı` apart from `i`, as APFS does). Pairs newer than
    /// the folding tables (Unicode 16; std's may be newer) are newer than every `$UpCase` too.
    #[test]
    fn every_one_to_one_upper_casing_keeps_the_key() {
        let folds = |c: char| c.to_string().chars().default_case_fold().ne([c]);
        let (mut checked, mut newer) = (0, Vec::new());
        for c in (0..=0xFFFF_u32).filter_map(char::from_u32) {
            let mut upper = c.to_uppercase();
            let (Some(u), None) = (upper.next(), upper.next()) else {
                continue;
            };
            if u == c || c == '\u{131}' {
                continue;
            }
            if !folds(c) && !folds(u) {
                newer.push(c);
                continue;
            }
            assert_eq!(
                path_key(&c.to_string()),
                path_key(&u.to_string()),
                "U+{:04X} and its upper case U+{:04X}",
                c as u32,
                u as u32
            );
            checked += 1;
        }
        assert!(checked > 1000, "{checked}");
        assert!(newer.len() < 10, "pairs the folding tables lack: {newer:?}");
    }

    /// Folder ranges on the server rely on a key being the keys of its segments.
    #[test]
    fn a_key_is_the_keys_of_its_segments() {
        for path in ["ΟΔΟΣ/Straße/ǅ", "a/\u{301}b/C", "İ/ı/I", "Ω/ᾼ/x"] {
            let by_segment: Vec<String> = path.split('/').map(path_key).collect();
            assert_eq!(path_key(path), by_segment.join("/"), "{path:?}");
        }
    }
}
