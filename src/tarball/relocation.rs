//! Which files Spack marks for relocation, decided from the bytes streamed into the tarball.
//!
//! Spack v1.1.0 (`binary_distribution.file_type`, `file_matches`, `tarfile_of_spec_prefix`):
//! - fewer than 8 bytes: never relocated;
//! - ELF or Mach-O magic in the first 8 bytes: a binary to relocate;
//! - otherwise *text* if the whole file is valid UTF-8 (strict, as Python decodes), or else
//!   if it has no byte in `[\x00\x7f-\x9f]` (ISO-8859-1 without control characters);
//! - a text file is relocated if the regex
//!   `(?<![\w\-_/])([\w\-_]*?)(P1|P2|…)([\w\-_/]*)` (bytes, `\w` = `[A-Za-z0-9_]`) finds a
//!   match in it, where `Pi` are the escaped UTF-8 prefixes to relocate;
//! - an absolute symlink is relocated if that regex *matches at the start* of its target.
//!
//! A regex match exists exactly where some prefix occurs at position `j` and, walking back
//! from `j` over `[A-Za-z0-9_-]` bytes, one reaches the start of the file or a byte other than
//! `/`. (The lazy group can only start where the look-behind allows: at the start of that run
//! of word bytes.) At the start of an absolute path the group is empty, so a link target
//! matches exactly when it starts with one of the prefixes. With no prefixes, or an empty one,
//! the alternation matches the empty string and everything matches, as in Python.
//!
//! Files are classified while they stream, chunk by chunk, so each file is read once.

use regex::bytes::Regex;

use crate::error::{Error, Result};

/// `[\w\-_]` for a bytes pattern: ASCII letters, digits, `_`, `-`.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Spack's `relocate.is_elf_magic(magic) or relocate.is_macho_magic(magic)` on the first 8
/// bytes.
pub(crate) fn is_binary_magic(magic: [u8; 8]) -> bool {
    let be4 = u32::from_be_bytes([magic[4], magic[5], magic[6], magic[7]]);
    let le4 = u32::from_le_bytes([magic[4], magic[5], magic[6], magic[7]]);
    magic.starts_with(b"\x7fELF")
        || magic.starts_with(b"\xcf\xfa\xed\xfe")
        || magic.starts_with(b"\xfe\xed\xfa\xcf")
        || magic.starts_with(b"\xce\xfa\xed\xfe")
        || magic.starts_with(b"\xfe\xed\xfa\xce")
        || (magic.starts_with(b"\xca\xfe\xba\xbe") && be4 < 10)
        || (magic.starts_with(b"\xbe\xba\xfe\xca") && le4 < 10)
}

/// The prefixes to relocate, compiled.
#[derive(Debug)]
pub(crate) struct PrefixMatcher {
    /// No prefixes, or an empty one: everything matches.
    always: bool,
    prefixes: Vec<Vec<u8>>,
    regex: Option<Regex>,
    max_len: usize,
}

impl PrefixMatcher {
    pub fn new(prefixes: &[String]) -> Result<Self> {
        let always = prefixes.is_empty() || prefixes.iter().any(String::is_empty);
        let regex = if always {
            None
        } else {
            let alternation: Vec<String> = prefixes.iter().map(|p| regex::escape(p)).collect();
            Some(
                regex::bytes::RegexBuilder::new(&alternation.join("|"))
                    .size_limit(64 << 20)
                    .build()
                    .map_err(|e| Error::invalid_input(format!("prefixes to relocate: {e}")))?,
            )
        };
        Ok(Self {
            always,
            prefixes: prefixes.iter().map(|p| p.as_bytes().to_vec()).collect(),
            regex,
            max_len: prefixes.iter().map(String::len).max().unwrap_or(0),
        })
    }

    /// Whether a symlink with this target is relocated: the target is absolute and
    /// `binary_regex.match(target)` succeeds.
    pub fn link_matches(&self, target: &[u8]) -> bool {
        target.first() == Some(&b'/')
            && (self.always || self.prefixes.iter().any(|p| target.starts_with(p)))
    }

    /// Whether `binary_regex.search(data)` finds a match, on a whole buffer.
    #[cfg(test)]
    pub fn search_all(&self, data: &[u8]) -> bool {
        let mut s = TextSearch::new(self);
        s.feed(self, data);
        s.found()
    }
}

/// Incremental `binary_regex.search` over a stream of chunks.
#[derive(Debug)]
struct TextSearch {
    found: bool,
    /// The last `max_len - 1` bytes seen, so occurrences straddling chunks are found.
    window: Vec<u8>,
    /// Whether the nearest non-word byte before `window` is `/` (false at the start of file).
    slash_before_window: bool,
    /// `window + chunk`, reused.
    buf: Vec<u8>,
}

impl TextSearch {
    fn new(m: &PrefixMatcher) -> Self {
        Self {
            found: m.always,
            window: Vec::new(),
            slash_before_window: false,
            buf: Vec::new(),
        }
    }

    fn found(&self) -> bool {
        self.found
    }

    fn feed(&mut self, m: &PrefixMatcher, chunk: &[u8]) {
        if self.found || chunk.is_empty() {
            return;
        }
        let Some(re) = &m.regex else {
            return;
        };
        let data: &[u8] = if self.window.is_empty() {
            chunk
        } else {
            self.buf.clear();
            self.buf.extend_from_slice(&self.window);
            self.buf.extend_from_slice(chunk);
            &self.buf
        };

        // Memo of the last walk back: for position `memo_pos`, the nearest non-word byte
        // before it was at `memo_k` (None: none within `data`). Keeps the scan linear.
        let mut memo: Option<(usize, Option<usize>)> = None;
        let mut start = 0;
        while let Some(m) = re.find_at(data, start) {
            let j = m.start();
            let mut k = j;
            let nearest = loop {
                if let Some((pos, mk)) = memo {
                    if k == pos {
                        break mk;
                    }
                }
                if k == 0 {
                    break None;
                }
                if !is_word(data[k - 1]) {
                    break Some(k - 1);
                }
                k -= 1;
            };
            memo = Some((j, nearest));
            let blocked = match nearest {
                Some(i) => data[i] == b'/',
                None => self.slash_before_window,
            };
            if !blocked {
                self.found = true;
                return;
            }
            start = j + 1;
        }

        // Slide the window: keep the last max_len - 1 bytes and the state before them.
        let keep = m.max_len.saturating_sub(1).min(data.len());
        let new_start = data.len() - keep;
        if let Some(i) = data[..new_start].iter().rposition(|&b| !is_word(b)) {
            self.slash_before_window = data[i] == b'/';
        }
        let tail = data[new_start..].to_vec();
        self.window = tail;
    }
}

/// How a file was classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileClass {
    /// ELF or Mach-O: `relocate_binaries`.
    Binary,
    /// Text containing a prefix: `relocate_textfiles`.
    TextToRelocate,
    /// Anything else.
    Other,
}

/// Streaming classifier for one regular file of known size.
pub(crate) struct Classifier<'m> {
    matcher: &'m PrefixMatcher,
    size: u64,
    seen: u64,
    state: State,
    utf8_ok: bool,
    /// An incomplete UTF-8 sequence at the end of the previous chunk.
    utf8_carry: Vec<u8>,
    iso_ok: bool,
    search: Option<TextSearch>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the first 8 bytes.
    Start,
    /// A text candidate, still scanning.
    Scanning,
    /// Decided before the end.
    Done(FileClass),
}

impl<'m> Classifier<'m> {
    pub fn new(matcher: &'m PrefixMatcher, size: u64) -> Self {
        let state = if size < 8 {
            State::Done(FileClass::Other)
        } else {
            State::Start
        };
        Self {
            matcher,
            size,
            seen: 0,
            state,
            utf8_ok: true,
            utf8_carry: Vec::new(),
            iso_ok: true,
            search: None,
        }
    }

    /// Whether more bytes can change the outcome.
    pub fn wants_more(&self) -> bool {
        !matches!(self.state, State::Done(_))
    }

    /// Feed the next bytes of the file. The first chunk must hold at least
    /// `min(8, size)` bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.seen += chunk.len() as u64;
        if self.state == State::Start {
            let magic: [u8; 8] = chunk
                .get(..8)
                .and_then(|m| m.try_into().ok())
                .expect("first chunk of 8 bytes");
            if is_binary_magic(magic) {
                self.state = State::Done(FileClass::Binary);
                return;
            }
            self.state = State::Scanning;
            self.search = Some(TextSearch::new(self.matcher));
        }
        if self.state != State::Scanning {
            return;
        }
        if self.utf8_ok {
            self.utf8_ok = self.utf8_feed(chunk);
        }
        if self.iso_ok {
            self.iso_ok = !chunk.iter().any(|&b| b == 0 || (0x7f..=0x9f).contains(&b));
        }
        if !self.utf8_ok && !self.iso_ok {
            self.state = State::Done(FileClass::Other);
            self.search = None;
            return;
        }
        if let Some(s) = &mut self.search {
            s.feed(self.matcher, chunk);
        }
    }

    /// Incremental strict UTF-8 validation; false once invalid.
    fn utf8_feed(&mut self, mut chunk: &[u8]) -> bool {
        if !self.utf8_carry.is_empty() {
            let need = match self.utf8_carry[0] {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            } - self.utf8_carry.len();
            let take = need.min(chunk.len());
            self.utf8_carry.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if take < need {
                // Still incomplete; validity of the prefix is checked when complete (or at
                // the end, where incomplete means invalid).
                return true;
            }
            if std::str::from_utf8(&self.utf8_carry).is_err() {
                return false;
            }
            self.utf8_carry.clear();
        }
        match std::str::from_utf8(chunk) {
            Ok(_) => true,
            Err(e) => {
                if e.error_len().is_some() {
                    return false;
                }
                self.utf8_carry.extend_from_slice(&chunk[e.valid_up_to()..]);
                true
            }
        }
    }

    /// The classification, once the whole file was fed.
    pub fn finish(self) -> FileClass {
        debug_assert!(!self.wants_more() || self.seen == self.size);
        match self.state {
            State::Done(c) => c,
            State::Start => FileClass::Other,
            State::Scanning => {
                let utf8 = self.utf8_ok && self.utf8_carry.is_empty();
                let text = utf8 || self.iso_ok;
                if text && self.search.as_ref().is_some_and(TextSearch::found) {
                    FileClass::TextToRelocate
                } else {
                    FileClass::Other
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(p: &[&str]) -> PrefixMatcher {
        PrefixMatcher::new(&p.iter().map(|s| (*s).to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn classify_chunks(m: &PrefixMatcher, data: &[u8], chunk: usize) -> FileClass {
        let mut c = Classifier::new(m, data.len() as u64);
        if data.is_empty() {
            return c.finish();
        }
        // The first chunk holds at least 8 bytes, as the builder guarantees.
        let first = chunk.max(8).min(data.len());
        c.feed(&data[..first]);
        for part in data[first..].chunks(chunk) {
            if !c.wants_more() {
                break;
            }
            c.feed(part);
        }
        c.finish()
    }

    fn classify(m: &PrefixMatcher, data: &[u8]) -> FileClass {
        let whole = classify_chunks(m, data, data.len().max(1));
        for chunk in [1, 2, 3, 5, 8, 13, 64] {
            assert_eq!(
                classify_chunks(m, data, chunk),
                whole,
                "chunk {chunk}: {data:?}"
            );
        }
        whole
    }

    #[test]
    fn magic() {
        assert!(is_binary_magic(*b"\x7fELF\x02\x01\x01\x00"));
        assert!(is_binary_magic(*b"\xcf\xfa\xed\xfe\x07\x00\x00\x01"));
        assert!(is_binary_magic(*b"\xca\xfe\xba\xbe\x00\x00\x00\x02"));
        // A JVM class file: cafebabe followed by a large version number.
        assert!(!is_binary_magic(*b"\xca\xfe\xba\xbe\x00\x00\x00\x34"));
        assert!(is_binary_magic(*b"\xbe\xba\xfe\xca\x02\x00\x00\x00"));
        assert!(!is_binary_magic(*b"\xbe\xba\xfe\xca\x00\x00\x00\x02"));
        assert!(!is_binary_magic(*b"#!/bin/s"));
    }

    #[test]
    fn search_semantics() {
        let m = matcher(&["/opt/spack"]);
        assert!(m.search_all(b"/opt/spack"));
        assert!(m.search_all(b"x /opt/spack/lib"));
        assert!(m.search_all(b"-L/opt/spack/lib"));
        assert!(m.search_all(b"abc_def-/opt/spack"));
        assert!(m.search_all(b"=/opt/spack"));
        assert!(m.search_all(b"\"/opt/spack\""));
        // Preceded by a path: /usr/opt/spack is not the prefix.
        assert!(!m.search_all(b"/usr/opt/spack"));
        assert!(!m.search_all(b"/usr/lib-x_y/opt/spack"));
        assert!(!m.search_all(b"/opt/spac"));
        // A blocked occurrence followed by a good one.
        assert!(m.search_all(b"/x/opt/spack and /opt/spack"));
        // Overlapping occurrences: the second starts inside the first.
        let m = matcher(&["/a/a"]);
        assert!(!m.search_all(b"/q/a/a"));
        assert!(m.search_all(b"x/a/a/a"));
        // A prefix starting with a word byte.
        let m = matcher(&["opt/x"]);
        assert!(m.search_all(b"opt/x"));
        assert!(m.search_all(b"foo-opt/x"));
        assert!(!m.search_all(b"/foo-opt/x"));
        assert!(!m.search_all(b"./foo-opt/x"));
        assert!(m.search_all(b".foo-opt/x"));
    }

    #[test]
    fn empty_prefix_list_matches_everything() {
        let m = matcher(&[]);
        assert!(m.search_all(b""));
        assert!(m.search_all(b"anything"));
        assert!(m.link_matches(b"/x"));
        assert!(!m.link_matches(b"x"));
        let m = matcher(&["/opt", ""]);
        assert!(m.search_all(b"zzz"));
    }

    #[test]
    fn links() {
        let m = matcher(&["/opt/spack", "/usr/local/sbang"]);
        assert!(m.link_matches(b"/opt/spack/lib/libz.so"));
        assert!(m.link_matches(b"/opt/spackfoo"));
        assert!(m.link_matches(b"/usr/local/sbang"));
        assert!(!m.link_matches(b"/usr/opt/spack"));
        assert!(!m.link_matches(b"opt/spack"));
        assert!(!m.link_matches(b"../opt/spack"));
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        let m = matcher(&["/opt/a+b(c)[d].e"]);
        assert!(m.search_all(b"x /opt/a+b(c)[d].e/y"));
        assert!(!m.search_all(b"x /opt/aab(c)[d].e/y"));
        let m = matcher(&["/opt/caf\u{e9}"]);
        assert!(m.search_all("path=/opt/caf\u{e9}/bin".as_bytes()));
    }

    #[test]
    fn classification() {
        use FileClass::{Binary, Other, TextToRelocate as Text};
        let m = matcher(&["/opt/spack"]);
        let utf8 = "\u{e9}\u{20ac}\u{1f600} /opt/spack \u{1f600}".as_bytes();
        let cases: [(&[u8], FileClass, &str); 16] = [
            (b"\x7fELF\x02\x01\x01\x00rest", Binary, "ELF"),
            (b"/opt/sp", Other, "too short to be anything"),
            (b"\x7fELF", Other, "too short for ELF"),
            (b"", Other, "empty"),
            (b"#!/opt/spack/bin/sh\n", Text, "script"),
            (b"#!/bin/sh\necho hi\n", Other, "no prefix"),
            (b"a\0b\0 /opt/spack", Text, "UTF-8 with NULs: text"),
            (b"caf\xe9 /opt/spack\n", Text, "ISO-8859-1 without controls"),
            (b"caf\xe9 \x85 /opt/spack\n", Other, "a C1 control"),
            (b"\xff\0 /opt/spack\n", Other, "not UTF-8, NUL"),
            (utf8, Text, "multi-byte UTF-8 across chunk boundaries"),
            (b"/opt/spack \xf0\x9f", Other, "truncated UTF-8; 0x9f is C1"),
            (b"/opt/spack \xe9", Text, "truncated but ISO text"),
            (b"/opt/spack \xed\xa0\x80", Other, "surrogate; C1"),
            (b"/opt/spack \xc0\xaf", Text, "overlong encoding, ISO text"),
            (b"/opt/spack \xc0\x80", Other, "overlong encoding with C1"),
        ];
        for (bytes, want, why) in cases {
            assert_eq!(classify(&m, bytes), want, "{why}");
        }
    }

    #[test]
    fn long_word_run_before_blocked_occurrences() {
        let m = matcher(&["abc"]);
        let mut data = b"/".to_vec();
        data.extend(std::iter::repeat_n(b'x', 10_000));
        for _ in 0..1000 {
            data.extend_from_slice(b"abc");
        }
        assert_eq!(classify(&m, &data), FileClass::Other);
        data.extend_from_slice(b" abc");
        assert_eq!(classify(&m, &data), FileClass::TextToRelocate);
    }

    /// Reference: a direct transcription of the regex search semantics.
    fn reference_search(prefixes: &[&[u8]], data: &[u8]) -> bool {
        (0..=data.len()).any(|j| {
            prefixes.iter().any(|p| data[j..].starts_with(p)) && {
                let mut k = j;
                while k > 0 && is_word(data[k - 1]) {
                    k -= 1;
                }
                k == 0 || data[k - 1] != b'/'
            }
        })
    }

    #[test]
    fn randomized_against_reference() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet = b"/ab-_ x\n";
        let prefixes: [&[&str]; 3] = [&["/ab"], &["/a/b", "b/a"], &["/ab/ab/ab", "a"]];
        for ps in prefixes {
            let m = matcher(ps);
            let pb: Vec<&[u8]> = ps.iter().map(|s| s.as_bytes()).collect();
            for _ in 0..2000 {
                let len = rng.random_range(8..40);
                let data: Vec<u8> = (0..len)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                    .collect();
                let expected = if reference_search(&pb, &data) {
                    FileClass::TextToRelocate
                } else {
                    FileClass::Other
                };
                assert_eq!(
                    classify(&m, &data),
                    expected,
                    "{ps:?} {:?}",
                    String::from_utf8_lossy(&data)
                );
            }
        }
    }
}
