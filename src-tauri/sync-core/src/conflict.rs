//! Names of conflicted copies: `report (conflicted copy from laptop 2026-11-25 103015).txt`.
//! The extension stays last so the copy still opens with the right program.

/// The conflicted-copy name for `path`, made unique against `taken` by a counter.
pub fn conflicted_copy_name(
    path: &str,
    device: &str,
    stamp: &str,
    taken: impl Fn(&str) -> bool,
) -> String {
    let (dir, name) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    // A leading dot is a hidden file, not an extension.
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let device: String = device
        .chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect();
    let mut n = 1;
    loop {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!(" {n}")
        };
        let candidate = format!("{dir}{stem} (conflicted copy from {device} {stamp}{suffix}){ext}");
        if !taken(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_directory_and_extension() {
        let name =
            conflicted_copy_name("docs/report.txt", "laptop", "2026-11-25 103015", |_| false);
        assert_eq!(
            name,
            "docs/report (conflicted copy from laptop 2026-11-25 103015).txt"
        );
    }

    #[test]
    fn hidden_files_and_missing_extensions() {
        let f = |p| conflicted_copy_name(p, "pc", "2026-01-02 030405", |_| false);
        assert_eq!(
            f(".bashrc"),
            ".bashrc (conflicted copy from pc 2026-01-02 030405)"
        );
        assert_eq!(
            f("Makefile"),
            "Makefile (conflicted copy from pc 2026-01-02 030405)"
        );
        assert_eq!(
            f("a.tar.gz"),
            "a.tar (conflicted copy from pc 2026-01-02 030405).gz"
        );
    }

    #[test]
    fn counts_up_when_the_name_is_taken() {
        let first = "x (conflicted copy from d s).txt";
        let name = conflicted_copy_name("x.txt", "d", "s", |p| p == first);
        assert_eq!(name, "x (conflicted copy from d s 2).txt");
    }
}
