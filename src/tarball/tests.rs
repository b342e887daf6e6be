//! Whole-tarball tests on real directory trees (no Python needed). Byte-for-byte comparison
//! with CPython/Spack is in tests/test_tarball*.py.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::*;

#[derive(Debug, PartialEq, Eq)]
struct Member {
    name: Vec<u8>,
    kind: u8,
    mode: u32,
    link: Vec<u8>,
    data: Vec<u8>,
}

fn octal(field: &[u8]) -> u64 {
    let s = std::str::from_utf8(field)
        .unwrap()
        .trim_end_matches('\0')
        .trim();
    if s.is_empty() {
        0
    } else {
        u64::from_str_radix(s, 8).unwrap()
    }
}

/// A minimal PAX reader: enough to check what the builder wrote.
fn read_tar(tar: &[u8]) -> Vec<Member> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut pax_path: Option<Vec<u8>> = None;
    let mut pax_link: Option<Vec<u8>> = None;
    loop {
        let h = &tar[pos..pos + 512];
        if h.iter().all(|&b| b == 0) {
            // End of archive: the rest is zeros up to a 10240 multiple.
            assert!(tar[pos..].iter().all(|&b| b == 0));
            assert_eq!(tar.len() % 10240, 0);
            assert!(tar.len() - pos >= 1024);
            return out;
        }
        let size = octal(&h[124..136]) as usize;
        let kind = h[156];
        let data = tar[pos + 512..pos + 512 + size].to_vec();
        pos += 512 + size.div_ceil(512) * 512;
        if kind == b'x' {
            let mut rest = &data[..];
            while !rest.is_empty() {
                let sp = rest.iter().position(|&b| b == b' ').unwrap();
                let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
                let rec = &rest[sp + 1..len - 1];
                let eq = rec.iter().position(|&b| b == b'=').unwrap();
                match &rec[..eq] {
                    b"path" => pax_path = Some(rec[eq + 1..].to_vec()),
                    b"linkpath" => pax_link = Some(rec[eq + 1..].to_vec()),
                    _ => {}
                }
                rest = &rest[len..];
            }
            continue;
        }
        let field = |f: &[u8]| {
            f.iter()
                .take_while(|&&b| b != 0)
                .copied()
                .collect::<Vec<u8>>()
        };
        assert_eq!(&h[108..124], b"0000000\x000000000\x00", "uid/gid");
        assert_eq!(&h[136..148], b"00000000000\0", "mtime");
        assert!(h[265..].iter().all(|&b| b == 0), "uname/gname/dev/prefix");
        out.push(Member {
            name: pax_path.take().unwrap_or_else(|| field(&h[..100])),
            kind,
            mode: octal(&h[100..108]) as u32,
            link: pax_link.take().unwrap_or_else(|| field(&h[157..257])),
            data,
        });
    }
}

fn build(prefix: &Path, prefixes: &[&str]) -> (Vec<u8>, TarballInfo) {
    let opts = TarballOptions::new(prefixes.iter().map(|s| (*s).to_string()).collect());
    let mut out = Vec::new();
    let info = write_tarball(
        prefix,
        &opts,
        |_| Ok(b"{buildinfo: 1}\n".to_vec()),
        &mut out,
    )
    .unwrap();
    (out, info)
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut tar = Vec::new();
    GzDecoder::new(gz).read_to_end(&mut tar).unwrap();
    tar
}

fn names(members: &[Member]) -> Vec<String> {
    members
        .iter()
        .map(|m| String::from_utf8_lossy(&m.name).into_owned())
        .collect()
}

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

fn base_name(prefix: &Path) -> String {
    prefix.to_str().unwrap().trim_start_matches('/').to_string()
}

/// The directories leading to `prefix`, as member names.
fn parents(prefix: &Path) -> Vec<String> {
    let b = base_name(prefix);
    let parts: Vec<&str> = b.split('/').collect();
    (1..parts.len())
        .map(|i| format!("{}/", parts[..i].join("/")))
        .collect()
}

fn tree() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("spack/linux/zlib-1.3-abc");
    fs::create_dir_all(&prefix).unwrap();
    (tmp, prefix)
}

#[test]
#[allow(clippy::too_many_lines)]
fn order_names_and_digests() {
    let (_tmp, prefix) = tree();
    let p = prefix.to_str().unwrap().to_string();
    write(
        &prefix.join("b.txt"),
        format!("prefix is {p}/lib\n").as_bytes(),
    );
    write(&prefix.join("a.txt"), b"nothing to see here\n");
    write(
        &prefix.join("lib/libz.so.1"),
        b"\x7fELF\x02\x01\x01\x00 pretend ELF",
    );
    write(
        &prefix.join("lib/pkgconfig/zlib.pc"),
        format!("libdir={p}/lib\n").as_bytes(),
    );
    write(&prefix.join("include/zlib.h"), b"/* zlib.h */\n");
    fs::create_dir_all(prefix.join("empty")).unwrap();
    symlink("libz.so.1", prefix.join("lib/libz.so")).unwrap();
    symlink(format!("{p}/lib/libz.so.1"), prefix.join("lib/abs.so")).unwrap();
    symlink("/usr/lib/libc.so", prefix.join("lib/other.so")).unwrap();
    write(
        &prefix.join("bin/run"),
        format!("#!/bin/sh\nexec {p}/bin/real\n").as_bytes(),
    );
    fs::set_permissions(prefix.join("bin/run"), fs::Permissions::from_mode(0o700)).unwrap();
    write(
        &prefix.join(".spack/spec.json"),
        format!("{{\"prefix\": \"{p}\"}}").as_bytes(),
    );
    symlink(format!("{p}/lib"), prefix.join(".spack/abs-link")).unwrap();
    write(&prefix.join(".spack/binary_distribution"), b"old buildinfo");

    let (gz, info) = build(&prefix, &[&p]);
    assert_eq!(info.compressed_size, gz.len() as u64);
    assert_eq!(info.compressed_digest, Digest::of_bytes(&gz));
    let tar = gunzip(&gz);
    assert_eq!(info.uncompressed_size, tar.len() as u64);
    assert_eq!(info.uncompressed_digest, Digest::of_bytes(&tar));

    let members = read_tar(&tar);
    let b = base_name(&prefix);
    let mut expected = parents(&prefix);
    expected.extend(
        [
            "/",
            "/a.txt",
            "/b.txt",
            "/.spack/",
            "/.spack/abs-link",
            "/.spack/spec.json",
            "/bin/",
            "/bin/run",
            "/empty/",
            "/include/",
            "/include/zlib.h",
            "/lib/",
            "/lib/abs.so",
            "/lib/libz.so",
            "/lib/libz.so.1",
            "/lib/other.so",
            "/lib/pkgconfig/",
            "/lib/pkgconfig/zlib.pc",
            "/.spack/binary_distribution",
        ]
        .iter()
        .map(|s| format!("{b}{s}")),
    );
    assert_eq!(names(&members), expected);

    let by_name = |suffix: &str| {
        members
            .iter()
            .find(|m| m.name == format!("{b}/{suffix}").into_bytes())
            .unwrap()
    };
    assert_eq!(by_name("bin/run").mode, 0o755);
    assert_eq!(by_name("a.txt").mode, 0o644);
    assert_eq!(by_name("lib/libz.so").kind, b'2');
    assert_eq!(by_name("lib/libz.so").link, b"libz.so.1");
    assert_eq!(by_name("lib/libz.so").mode, 0o755);
    assert_eq!(
        by_name(".spack/binary_distribution").data,
        b"{buildinfo: 1}\n"
    );
    assert_eq!(by_name(".spack/binary_distribution").mode, 0o644);
    assert!(members
        .iter()
        .filter(|m| m.kind == b'5')
        .all(|m| m.mode == 0o755));

    assert_eq!(
        info.relocation,
        RelocationLists {
            relocate_binaries: vec!["lib/libz.so.1".into()],
            // Symlinks under .spack/ are checked too (Spack does not skip them).
            relocate_links: vec![".spack/abs-link".into(), "lib/abs.so".into()],
            relocate_textfiles: vec![
                "b.txt".into(),
                "bin/run".into(),
                "lib/pkgconfig/zlib.pc".into()
            ],
        }
    );
}

#[test]
fn same_input_same_bytes() {
    let (_tmp, prefix) = tree();
    write(&prefix.join("x"), b"hello world");
    let (a, ia) = build(&prefix, &["/nowhere"]);
    let (b, ib) = build(&prefix, &["/nowhere"]);
    assert_eq!(a, b);
    assert_eq!(ia, ib);
}

#[test]
fn hard_links_are_deduplicated() {
    let (_tmp, prefix) = tree();
    write(&prefix.join("bin/tool"), b"\x7fELF\x02\x01\x01\x00...");
    fs::hard_link(prefix.join("bin/tool"), prefix.join("bin/alias")).unwrap();
    fs::hard_link(prefix.join("bin/tool"), prefix.join("a-first")).unwrap();
    let (gz, info) = build(&prefix, &["/x"]);
    let members = read_tar(&gunzip(&gz));
    let b = base_name(&prefix);
    let files: Vec<&Member> = members
        .iter()
        .filter(|m| m.kind == b'0' || m.kind == b'1')
        .collect();
    // a-first comes first (top-level files before subdirectories) and carries the data.
    assert_eq!(files[0].name, format!("{b}/a-first").into_bytes());
    assert_eq!(files[0].kind, b'0');
    assert_eq!(files[1].name, format!("{b}/bin/alias").into_bytes());
    assert_eq!(files[1].kind, b'1');
    assert_eq!(files[1].link, format!("{b}/a-first").into_bytes());
    assert!(files[1].data.is_empty());
    assert_eq!(files[2].kind, b'1');
    // Only the first name is classified.
    assert_eq!(info.relocation.relocate_binaries, ["a-first"]);
}

#[test]
fn buildinfo_hard_links_are_skipped_everywhere() {
    let (_tmp, prefix) = tree();
    write(&prefix.join(".spack/binary_distribution"), b"old");
    fs::hard_link(
        prefix.join(".spack/binary_distribution"),
        prefix.join("copy"),
    )
    .unwrap();
    write(&prefix.join("keep"), b"keep");
    let (gz, _) = build(&prefix, &["/x"]);
    let members = read_tar(&gunzip(&gz));
    let b = base_name(&prefix);
    let n = names(&members);
    assert!(!n.contains(&format!("{b}/copy")));
    assert!(n.contains(&format!("{b}/keep")));
    assert_eq!(
        n.iter()
            .filter(|x| x.ends_with("binary_distribution"))
            .count(),
        1
    );
}

#[test]
fn fifo_is_left_out() {
    let (_tmp, prefix) = tree();
    write(&prefix.join("a"), b"a");
    let status = std::process::Command::new("mkfifo")
        .arg(prefix.join("pipe"))
        .status();
    if !status.is_ok_and(|s| s.success()) {
        return; // no mkfifo: nothing to check
    }
    let (gz, _) = build(&prefix, &["/x"]);
    let n = names(&read_tar(&gunzip(&gz)));
    assert!(!n.iter().any(|x| x.ends_with("/pipe")));
}

#[test]
fn long_and_non_utf8_names() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let (_tmp, prefix) = tree();
    let long = "d".repeat(120);
    write(&prefix.join(&long).join("f".repeat(200)), b"x");
    let odd = prefix.join(OsStr::from_bytes(b"caf\xe9"));
    write(&odd, b"latin-1 name");
    let (gz, _) = build(&prefix, &["/x"]);
    let members = read_tar(&gunzip(&gz));
    let b = base_name(&prefix);
    assert!(members
        .iter()
        .any(|m| m.name == format!("{b}/{long}/{}", "f".repeat(200)).into_bytes()));
    assert!(members
        .iter()
        .any(|m| m.name == [format!("{b}/caf").as_bytes(), b"\xe9"].concat()));
}

#[test]
fn non_utf8_name_to_relocate_is_an_error() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let (_tmp, prefix) = tree();
    write(
        &prefix.join(OsStr::from_bytes(b"bin\xff")),
        b"\x7fELF\x02\x01\x01\x00...",
    );
    let mut out = Vec::new();
    let e = write_tarball(
        &prefix,
        &TarballOptions::default(),
        |_| Ok(Vec::new()),
        &mut out,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("bin"), "{e}");
}

#[test]
fn bad_prefixes() {
    let (tmp, prefix) = tree();
    let opts = TarballOptions::default();
    let run = |p: &Path| write_tarball(p, &opts, |_| Ok(Vec::new()), Vec::new()).unwrap_err();

    let e = run(Path::new("relative/path"));
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("relative/path"), "{e}");

    let missing = tmp.path().join("missing");
    let e = run(&missing);
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.message().contains(missing.to_str().unwrap()), "{e}");

    let file = prefix.join("file");
    write(&file, b"x");
    let e = run(&file);
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains(file.to_str().unwrap()), "{e}");

    assert_eq!(run(Path::new("/")).kind(), ErrorKind::InvalidInput);

    let e = write_tarball(
        &prefix,
        &TarballOptions {
            compression_level: 10,
            ..TarballOptions::default()
        },
        |_| Ok(Vec::new()),
        Vec::new(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[test]
fn buildinfo_error_is_returned() {
    let (_tmp, prefix) = tree();
    let e = write_tarball(
        &prefix,
        &TarballOptions::default(),
        |_| Err(Error::invalid_input("no dump today")),
        Vec::new(),
    )
    .unwrap_err();
    assert_eq!(e.message(), "no dump today");
}

#[test]
fn create_tarball_file_renames_on_success_only() {
    let (tmp, prefix) = tree();
    write(&prefix.join("x"), b"x");
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("x.tar.gz");

    let e = create_tarball_file(&prefix, &dest, &TarballOptions::default(), |_| {
        Err(Error::invalid_input("boom"))
    })
    .unwrap_err();
    assert_eq!(e.message(), "boom");
    assert_eq!(
        fs::read_dir(&out_dir).unwrap().count(),
        0,
        "no temp file left"
    );

    let info = create_tarball_file(&prefix, &dest, &TarballOptions::default(), |_| {
        Ok(b"{}".to_vec())
    })
    .unwrap();
    let bytes = fs::read(&dest).unwrap();
    assert_eq!(info.compressed_digest, Digest::of_bytes(&bytes));
    assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 1);
    let mode = fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
    assert_ne!(mode & 0o044, 0, "not a private temp file mode: {mode:o}");

    let (gz, _) = build(&prefix, &[]);
    let mut out = Vec::new();
    write_tarball(
        &prefix,
        &TarballOptions::default(),
        |_| Ok(b"{}".to_vec()),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, bytes);
    assert_ne!(gz, bytes);
}

#[test]
fn file_larger_than_read_chunk() {
    let (_tmp, prefix) = tree();
    let p = prefix.to_str().unwrap().to_string();
    // A text file with the prefix straddling the 1 MiB read boundary.
    let mut data = vec![b'a'; READ_CHUNK - 5];
    data.push(b' ');
    data.extend_from_slice(p.as_bytes());
    data.extend(std::iter::repeat_n(b'z', 3 * READ_CHUNK));
    write(&prefix.join("big.txt"), &data);
    let (gz, info) = build(&prefix, &[&p]);
    assert_eq!(info.relocation.relocate_textfiles, ["big.txt"]);
    let members = read_tar(&gunzip(&gz));
    assert_eq!(
        members
            .iter()
            .find(|m| m.name.ends_with(b"big.txt"))
            .unwrap()
            .data,
        data
    );
}

#[test]
fn file_changing_size_is_an_error() {
    use walk::Visitor;
    let (_tmp, prefix) = tree();
    let path = prefix.join("f");
    write(&path, b"0123456789");
    let matcher = PrefixMatcher::new(&[]).unwrap();
    let mut out = Vec::new();
    let mut b = Builder {
        sink: gzip::GzipSink::new(&mut out, 6).unwrap(),
        matcher: &matcher,
        lists: RelocationLists::default(),
        buf: vec![0; 8],
        header: Vec::new(),
        cancel: None,
        progress: None,
        read: 0,
    };
    let entry = |size| walk::FileEntry {
        name: b"f",
        rel: b"f",
        path: &path,
        size,
        mode: 0o644,
    };
    // lstat said 20 bytes, the file has 10: it shrank.
    let e = b.file(&entry(20)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(
        e.message().contains("changed size") && e.message().contains("read 10"),
        "{e}"
    );
    assert!(e.message().contains(path.to_str().unwrap()), "{e}");
    // lstat said 5 bytes, the file has 10: it grew.
    let e = b.file(&entry(5)).unwrap_err();
    assert!(e.message().contains("grew beyond 5 bytes"), "{e}");
    // Exactly right, with a read buffer smaller than the file.
    b.file(&entry(10)).unwrap();
}

#[test]
fn cancel_flag_stops_the_build() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let (tmp, prefix) = tree();
    write(&prefix.join("x"), b"x");
    let flag = Arc::new(AtomicBool::new(false));
    let opts = TarballOptions {
        cancel: Some(flag.clone()),
        ..TarballOptions::default()
    };
    let dest = tmp.path().join("t.tar.gz");
    create_tarball_file(&prefix, &dest, &opts, |_| Ok(Vec::new())).unwrap();
    flag.store(true, std::sync::atomic::Ordering::Relaxed);
    fs::remove_file(&dest).unwrap();
    let e = create_tarball_file(&prefix, &dest, &opts, |_| Ok(Vec::new())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert!(!dest.exists());
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "only the prefix tree is left"
    );
}

#[test]
fn output_errors_name_the_destination() {
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "No space left on device",
            ))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (_tmp, prefix) = tree();
    let out = NamedWriter {
        inner: Full,
        name: Path::new("/cache/x.tar.gz"),
    };
    let e =
        write_tarball(&prefix, &TarballOptions::default(), |_| Ok(Vec::new()), out).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert_eq!(
        e.message(),
        "writing tarball: /cache/x.tar.gz: No space left on device"
    );
}
