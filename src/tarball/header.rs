//! ustar headers with PAX extended headers, byte for byte as CPython's `tarfile` writes them
//! with `format=PAX_FORMAT` (the default), `encoding="utf-8"`, `errors="surrogateescape"`.
//!
//! What CPython does (`TarInfo.create_pax_header`):
//! - `path`/`linkpath` go to a PAX record when the name is not ASCII or longer than 100
//!   characters (directory names include their trailing `/`); the ustar field then holds the
//!   name encoded `ascii`/`replace`, cut to 100 bytes. PAX format never uses the ustar prefix
//!   field.
//! - `size` goes to a PAX record when it does not fit 11 octal digits (>= 8 GiB); the ustar
//!   field is then 0.
//! - The extended header is named `././@PaxHeader`, type `x`, mode 0; its records are
//!   `"<len> <key>=<value>\n"` in the order path, linkpath, size, preceded by
//!   `hdrcharset=BINARY` when a value is not valid UTF-8 (values are then the raw bytes).
//! - Numbers are `%0*o` + NUL; the checksum is `%06o` + NUL, keeping the 8th byte a space.

pub(crate) const BLOCK: usize = 512;

/// Largest value an 11-digit octal field holds plus one: 8 GiB.
pub(crate) const MAX_OCTAL_SIZE: u64 = 1 << 33;

const NAME_LEN: usize = 100;

/// The entry types Spack emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryType {
    Regular,
    HardLink,
    Symlink,
    Directory,
}

impl EntryType {
    fn flag(self) -> u8 {
        match self {
            EntryType::Regular => b'0',
            EntryType::HardLink => b'1',
            EntryType::Symlink => b'2',
            EntryType::Directory => b'5',
        }
    }
}

/// One member's header fields; uid/gid/mtime are always 0 and uname/gname empty.
pub(crate) struct Header<'a> {
    /// Raw name bytes; directories without their trailing slash (it is added here).
    pub name: &'a [u8],
    pub linkname: &'a [u8],
    pub size: u64,
    pub mode: u32,
    pub kind: EntryType,
}

/// Append the member's header blocks (PAX extended header if needed, then the ustar block).
pub(crate) fn write_header(h: &Header<'_>, out: &mut Vec<u8>) {
    let dir_name;
    let name: &[u8] = if h.kind == EntryType::Directory && h.name.last() != Some(&b'/') {
        dir_name = [h.name, b"/"].concat();
        &dir_name
    } else {
        h.name
    };

    let mut records: Vec<(&[u8], &[u8])> = Vec::new();
    if needs_pax_name(name) {
        records.push((b"path", name));
    }
    if needs_pax_name(h.linkname) {
        records.push((b"linkpath", h.linkname));
    }
    let size_text;
    let ustar_size = if h.size < MAX_OCTAL_SIZE {
        h.size
    } else {
        size_text = h.size.to_string();
        records.push((b"size", size_text.as_bytes()));
        0
    };
    if !records.is_empty() {
        write_pax_extended_header(&records, out);
    }

    let name_field = super::names::ascii_replace(name);
    let link_field = super::names::ascii_replace(h.linkname);
    write_ustar_block(
        &name_field,
        h.mode & 0o7777,
        ustar_size,
        h.kind.flag(),
        &link_field,
        out,
    );
}

/// The bytes of the member headers for `h`, as a fresh vector (tests and small uses).
#[cfg(test)]
pub(crate) fn header_bytes(h: &Header<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    write_header(h, &mut v);
    v
}

/// Bytes of zero padding after `size` bytes of member data.
pub(crate) fn padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 {
        0
    } else {
        BLOCK - rem
    }
}

/// CPython: not ASCII (`encode("ascii", "strict")` fails), or more than 100 characters (for
/// ASCII, characters are bytes).
fn needs_pax_name(name: &[u8]) -> bool {
    !name.is_ascii() || name.len() > NAME_LEN
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including
/// its own digits.
fn pax_record(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let l = key.len() + value.len() + 3;
    let mut p = 0usize;
    loop {
        let n = l + decimal_len(p);
        if n == p {
            break;
        }
        p = n;
    }
    out.extend_from_slice(p.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn write_pax_extended_header(records: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(records.iter().map(|(k, v)| k.len() + v.len() + 8).sum());
    if records.iter().any(|(_, v)| !super::names::is_utf8(v)) {
        payload.extend_from_slice(b"21 hdrcharset=BINARY\n");
    }
    for (k, v) in records {
        pax_record(k, v, &mut payload);
    }
    write_ustar_block(b"././@PaxHeader", 0, payload.len() as u64, b'x', b"", out);
    out.extend_from_slice(&payload);
    out.resize(out.len() + padding(payload.len() as u64), 0);
}

/// Append one 512-byte ustar header block. `name` and `linkname` are cut to 100 bytes.
fn write_ustar_block(
    name: &[u8],
    mode: u32,
    size: u64,
    typeflag: u8,
    linkname: &[u8],
    out: &mut Vec<u8>,
) {
    let mut b = [0u8; BLOCK];
    copy_field(&mut b[0..100], name);
    octal(&mut b[100..108], u64::from(mode));
    octal(&mut b[108..116], 0); // uid
    octal(&mut b[116..124], 0); // gid
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], 0); // mtime
    b[148..156].copy_from_slice(b"        ");
    b[156] = typeflag;
    copy_field(&mut b[157..257], linkname);
    b[257..265].copy_from_slice(b"ustar\x0000");
    // uname, gname, devmajor, devminor, prefix: all NUL.
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    let chk = format!("{sum:06o}\0");
    b[148..155].copy_from_slice(chk.as_bytes());
    out.extend_from_slice(&b);
}

fn copy_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// `"%0*o" % (len - 1, n)` followed by NUL; `n` must fit.
fn octal(field: &mut [u8], n: u64) {
    let digits = field.len() - 1;
    let s = format!("{n:0digits$o}");
    debug_assert_eq!(s.len(), digits, "octal field overflow");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

/// The end of archive: two zero blocks, then zeros up to a multiple of the 10240-byte record
/// (CPython's `RECORDSIZE`), given the archive length so far.
pub(crate) fn end_of_archive_len(offset: u64) -> usize {
    const RECORD: u64 = 20 * BLOCK as u64;
    let end = offset + 2 * BLOCK as u64;
    let rem = end % RECORD;
    let pad = if rem == 0 { 0 } else { RECORD - rem };
    (2 * BLOCK as u64 + pad) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;

    fn field(b: &[u8], start: usize, len: usize) -> &[u8] {
        &b[start..start + len]
    }

    fn checksum_ok(block: &[u8]) -> bool {
        let mut copy = block.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|&x| u32::from(x)).sum();
        field(block, 148, 8) == format!("{sum:06o}\0 ").as_bytes()
    }

    fn h(name: &[u8], kind: EntryType, size: u64, mode: u32, linkname: &[u8]) -> Vec<u8> {
        header_bytes(&Header {
            name,
            linkname,
            size,
            mode,
            kind,
        })
    }

    /// The expected values are the length and sha256 of CPython 3.11's
    /// `TarInfo.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")` for the same fields
    /// (uid/gid/mtime 0, empty uname/gname).
    fn assert_cpython(got: &[u8], len: usize, sha256: &str) {
        assert_eq!(got.len(), len);
        assert_eq!(Digest::of_bytes(got).hex(), sha256);
    }

    #[test]
    fn regular_file() {
        let b = h(b"usr/bin/x", EntryType::Regular, 5, 0o755, b"");
        assert_cpython(
            &b,
            512,
            "e67a0e1b17cc203c78f562895b125c854f6a4b8ada0be2b62e1a4ec33dc3e027",
        );
        assert_eq!(field(&b, 0, 10), b"usr/bin/x\0");
        assert_eq!(field(&b, 100, 8), b"0000755\0");
        assert_eq!(field(&b, 124, 12), b"00000000005\0");
        assert_eq!(field(&b, 257, 8), b"ustar\x0000");
        assert!(checksum_ok(&b));
    }

    #[test]
    fn directory_gets_trailing_slash() {
        let b = h(b"opt/spack", EntryType::Directory, 0, 0o755, b"");
        assert_cpython(
            &b,
            512,
            "25fbc5864ae83050cd406824267655598e018308b8115a7669425ab37ad1b34e",
        );
        assert_eq!(field(&b, 0, 11), b"opt/spack/\0");
        assert_eq!(b[156], b'5');
    }

    #[test]
    fn long_name_uses_pax_path() {
        let name = vec![b'a'; 101];
        let b = h(&name, EntryType::Regular, 0, 0o644, b"");
        assert_cpython(
            &b,
            1536,
            "2d8b59b99afa72f80798de3a978c847934b42c11537a38e2e9be17714cca04bf",
        );
        assert_eq!(field(&b, 0, 15), b"././@PaxHeader\0");
        assert_eq!(b[156], b'x');
        assert!(b[BLOCK..].starts_with(b"111 path=aaa"));
        // ustar name cut to 100 bytes, without NUL.
        assert_eq!(field(&b, 2 * BLOCK, 100), &name[..100]);
        assert!(checksum_ok(&b[..BLOCK]));
        assert!(checksum_ok(&b[2 * BLOCK..]));
    }

    #[test]
    fn directory_slash_counts_towards_100() {
        let name = vec![b'd'; 100];
        assert_eq!(h(&name, EntryType::Regular, 0, 0o644, b"").len(), BLOCK);
        let b = h(&name, EntryType::Directory, 0, 0o755, b"");
        assert_cpython(
            &b,
            1536,
            "e04be96a0d232039c01def976e34dfd5b60f932fc4d219eeeb374cd4ea9bd86e",
        );
        assert!(b[BLOCK..].starts_with(b"111 path=ddd"));
    }

    #[test]
    fn record_length_fixed_point() {
        let mut out = Vec::new();
        pax_record(b"path", &[b'x'; 91], &mut out);
        assert_eq!(out.len(), 101);
        assert!(out.starts_with(b"101 path="));
        out.clear();
        pax_record(b"path", &[b'x'; 90], &mut out);
        assert_eq!(out.len(), 99);
        assert!(out.starts_with(b"99 path="));
    }

    #[test]
    fn non_ascii_name_and_link() {
        let b = h(
            "caf\u{e9}/\u{1f600}".as_bytes(),
            EntryType::Symlink,
            0,
            0o755,
            "/t\u{e9}".as_bytes(),
        );
        assert_cpython(
            &b,
            1536,
            "c77b512448138ca456133424937d03fe460cfa6c1b9f7786df51fd5e14fdaf1d",
        );
        assert!(b[BLOCK..]
            .starts_with("19 path=caf\u{e9}/\u{1f600}\n17 linkpath=/t\u{e9}\n\0".as_bytes()));
        assert_eq!(field(&b, 2 * BLOCK, 8), b"caf?/?\0\0");
        assert_eq!(field(&b, 2 * BLOCK + 157, 5), b"/t?\0\0");
    }

    #[test]
    fn invalid_utf8_name_sets_hdrcharset_binary() {
        let b = h(b"a\xffb", EntryType::Regular, 3, 0o644, b"");
        assert_cpython(
            &b,
            1536,
            "27e8adefb95933c960782dc5cff41a56b08da0a9385601e2b9bdf66a39b996c7",
        );
        assert!(b[BLOCK..].starts_with(b"21 hdrcharset=BINARY\n12 path=a\xffb\n\0"));
        assert_eq!(field(&b, 2 * BLOCK, 4), b"a?b\0");
    }

    #[test]
    fn huge_size_uses_pax_size() {
        let b = h(b"big", EntryType::Regular, MAX_OCTAL_SIZE, 0o644, b"");
        assert_cpython(
            &b,
            1536,
            "2d58f02d64a1e15841af60eb07f4292dafafda0a4501d798d2194a1f2948e247",
        );
        assert!(b[BLOCK..].starts_with(b"19 size=8589934592\n\0"));
        assert_eq!(field(&b, 2 * BLOCK + 124, 12), b"00000000000\0");
        let below = h(b"big", EntryType::Regular, MAX_OCTAL_SIZE - 1, 0o644, b"");
        assert_cpython(
            &below,
            512,
            "97ae67ec57e7e04806bf37017532ef8db2fe1882ca00abd767bb76d897284797",
        );
        assert_eq!(field(&below, 124, 12), b"77777777777\0");
    }

    #[test]
    fn hardlink_with_long_target() {
        let b = h(&[b'x'; 50], EntryType::HardLink, 0, 0o644, &[b'y'; 300]);
        assert_cpython(
            &b,
            1536,
            "6a746440b7706f780ddcbfa8d9d79de7ce8e2f1f7bb4372b7a141fc0881108b0",
        );
    }

    #[test]
    fn all_pax_records_at_once() {
        let mut name = "\u{e9}".repeat(200).into_bytes();
        name.push(0xfe);
        let b = h(
            &name,
            EntryType::Regular,
            (1 << 40) + 7,
            0o644,
            &[b'l'; 101],
        );
        assert_cpython(
            &b,
            2048,
            "15a4ccd7cf3c515d5114c0f9541e6f1f6e33eab0878a3ca79360476c6ace8436",
        );
    }

    #[test]
    fn end_of_archive() {
        assert_eq!(end_of_archive_len(0), 10240);
        assert_eq!(end_of_archive_len(512), 10240 - 512);
        assert_eq!(end_of_archive_len(9216), 1024);
        assert_eq!(end_of_archive_len(9217), 1024 + 10239);
        assert_eq!(end_of_archive_len(10240), 10240);
    }

    #[test]
    fn padding_sizes() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(513), 511);
    }
}
