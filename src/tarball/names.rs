//! Tar member names, as Spack's `default_path_to_name` and CPython's `tarfile` produce them.
//!
//! Names are raw bytes (file names on Unix are bytes). Python sees them as `str` decoded from
//! UTF-8 with `surrogateescape`; the rules below are phrased in bytes but give the same results
//! as Python's string operations on such `str`s:
//! - a member name is the absolute path with its root dropped, components normalized as
//!   `pathlib.PurePosixPath` does (empty and `.` components dropped, `..` kept);
//! - directory entries are sorted by `str` order, i.e. by code point of the surrogate-escaped
//!   decoding, which differs from byte order only for names that are not valid UTF-8;
//! - the ustar name field holds the name encoded `ascii` with `replace`: one `?` per non-ASCII
//!   code point (one per undecodable byte).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// The components of an absolute path as `PurePosixPath(path).parts[1:]`: `None` when the
/// path is not absolute.
pub(crate) fn name_components(path: &Path) -> Option<Vec<&[u8]>> {
    let mut comps = path.components();
    if comps.next() != Some(Component::RootDir) {
        return None;
    }
    Some(
        comps
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.as_bytes()),
                Component::ParentDir => Some(&b".."[..]),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
            })
            .collect(),
    )
}

/// Join name components with `/`.
pub(crate) fn join(components: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(components.iter().map(|c| c.len() + 1).sum());
    for (i, c) in components.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    out
}

/// `name + "/" + child`.
pub(crate) fn child(name: &[u8], child: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 1 + child.len());
    if !name.is_empty() {
        out.extend_from_slice(name);
        out.push(b'/');
    }
    out.extend_from_slice(child);
    out
}

/// Code points of `bytes` decoded as UTF-8 with `surrogateescape` (each undecodable byte `b`
/// becomes U+DC00+b), as Python's `os.fsdecode` does.
pub(crate) fn surrogateescape_code_points(mut bytes: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.extend(s.chars().map(u32::from));
                return out;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                out.extend(
                    std::str::from_utf8(valid)
                        .expect("valid prefix")
                        .chars()
                        .map(u32::from),
                );
                let bad = e.error_len().unwrap_or(rest.len());
                out.extend(rest[..bad].iter().map(|&b| 0xDC00 + u32::from(b)));
                bytes = &rest[bad..];
            }
        }
    }
}

/// Sort directory entry names as Python sorts the `str` names `os.scandir` yields.
pub(crate) fn sort_like_python<T>(items: &mut [T], name: impl Fn(&T) -> &OsStr) {
    if items
        .iter()
        .all(|i| std::str::from_utf8(name(i).as_bytes()).is_ok())
    {
        // Byte order of valid UTF-8 is code point order.
        items.sort_unstable_by(|a, b| name(a).as_bytes().cmp(name(b).as_bytes()));
    } else {
        items.sort_by_cached_key(|i| surrogateescape_code_points(name(i).as_bytes()));
    }
}

/// Compare two names in Python `str` order (used by tests and for checking).
#[cfg(test)]
pub(crate) fn python_str_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    surrogateescape_code_points(a).cmp(&surrogateescape_code_points(b))
}

/// `name.encode("ascii", "replace")`: ASCII bytes kept, one `?` per other code point.
pub(crate) fn ascii_replace(bytes: &[u8]) -> Vec<u8> {
    if bytes.is_ascii() {
        return bytes.to_vec();
    }
    surrogateescape_code_points(bytes)
        .into_iter()
        .map(|c| if c < 0x80 { c as u8 } else { b'?' })
        .collect()
}

/// Whether `bytes` is valid UTF-8 (Python's strict `encode("utf-8")` of the decoded name
/// succeeds exactly then).
pub(crate) fn is_utf8(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    fn comps(p: &str) -> Option<Vec<String>> {
        name_components(Path::new(p)).map(|v| {
            v.into_iter()
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect()
        })
    }

    #[test]
    fn components_like_pure_posix_path() {
        assert_eq!(comps("/a/b/c").unwrap(), ["a", "b", "c"]);
        assert_eq!(comps("/a//b/./c/").unwrap(), ["a", "b", "c"]);
        assert_eq!(comps("//a/b").unwrap(), ["a", "b"]);
        assert_eq!(comps("/a/../b").unwrap(), ["a", "..", "b"]);
        assert_eq!(comps("/").unwrap(), Vec::<String>::new());
        assert!(comps("a/b").is_none());
        assert!(comps("./a").is_none());
    }

    #[test]
    fn join_and_child() {
        assert_eq!(join(&[b"a", b"b"]), b"a/b");
        assert_eq!(join(&[]), b"");
        assert_eq!(child(b"a/b", b"c"), b"a/b/c");
        assert_eq!(child(b"", b"c"), b"c");
    }

    #[test]
    fn surrogateescape() {
        assert_eq!(surrogateescape_code_points(b"a\xc3\xa9"), [0x61, 0xe9]);
        assert_eq!(surrogateescape_code_points(b"a\xff"), [0x61, 0xdcff]);
        // Truncated sequence at the end: each byte escaped.
        assert_eq!(surrogateescape_code_points(b"\xe2\x82"), [0xdce2, 0xdc82]);
        // Maximal invalid subpart followed by ASCII.
        assert_eq!(
            surrogateescape_code_points(b"\xe2\x82A"),
            [0xdce2, 0xdc82, 0x41]
        );
        // Encoded surrogates are invalid in UTF-8, as in Python.
        assert_eq!(
            surrogateescape_code_points(b"\xed\xa0\x80"),
            [0xdced, 0xdca0, 0xdc80]
        );
    }

    #[test]
    fn python_order_differs_from_bytes_for_invalid_utf8() {
        // U+E000 (ee 80 80) sorts after the escaped byte 0xff (U+DCFF) in Python, although
        // 0xee < 0xff as bytes.
        let a: &[u8] = b"\xee\x80\x80";
        let b: &[u8] = b"\xff";
        assert_eq!(a.cmp(b), Ordering::Less);
        assert_eq!(python_str_cmp(a, b), Ordering::Greater);
        // U+00E9 (c3 a9) sorts before U+DCFF.
        assert_eq!(python_str_cmp(b"\xc3\xa9", b), Ordering::Less);

        let mut names: Vec<OsString> = [&b"\xff"[..], b"\xee\x80\x80", b"b", b"\xc3\xa9"]
            .iter()
            .map(|b| OsString::from_vec(b.to_vec()))
            .collect();
        sort_like_python(&mut names, |n| n.as_os_str());
        let got: Vec<Vec<u8>> = names.into_iter().map(OsString::into_vec).collect();
        assert_eq!(got, [&b"b"[..], b"\xc3\xa9", b"\xff", b"\xee\x80\x80"]);
    }

    #[test]
    fn sort_utf8_by_bytes() {
        let mut names: Vec<OsString> = ["b", "a", "\u{e9}", "Z", "a.b", "a-b"]
            .iter()
            .map(OsString::from)
            .collect();
        sort_like_python(&mut names, |n| n.as_os_str());
        assert_eq!(names, ["Z", "a", "a-b", "a.b", "b", "\u{e9}"]);
    }

    #[test]
    fn ascii_replace_counts_code_points() {
        assert_eq!(ascii_replace(b"abc"), b"abc");
        assert_eq!(ascii_replace("h\u{e9}llo\u{1f600}".as_bytes()), b"h?llo?");
        assert_eq!(ascii_replace(b"a\xff\xfeb"), b"a??b");
    }
}
