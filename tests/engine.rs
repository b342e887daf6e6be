//! The engine against a real registry (the CNCF distribution server on loopback).
#![allow(clippy::many_single_char_names)]

mod common;

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use common::{unique_repo, TestRegistry};
use serde_json::json;
use spack_oci_rs::push::{self, LayerSource, PushItem, PushOptions, PushPlan};
use spack_oci_rs::registry::BlobSource;
use spack_oci_rs::transport::auth::{Credentials, StaticCredentials};
use spack_oci_rs::transport::{Client, ClientOptions};
use spack_oci_rs::{Digest, ErrorKind, Reference};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn client() -> Client {
    let mut o = ClientOptions::default();
    o.retry.max_attempts = 2;
    Client::new(o).unwrap()
}

fn client_for(reg: &TestRegistry) -> Client {
    let mut o = ClientOptions::default();
    o.retry.max_attempts = 2;
    if let Some(ca) = reg.ca_file() {
        o.ca_certs = vec![ca];
    }
    if let Some((u, p)) = reg.credentials() {
        let mut c = StaticCredentials::new();
        c.insert(reg.host(), Credentials::new(u, p));
        o.credentials = std::sync::Arc::new(c);
    }
    Client::new(o).unwrap()
}

/// A small gzip tarball of one file.
fn make_tarball(dir: &Path, name: &str, content: &[u8]) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.tar.gz"));
    let f = std::fs::File::create(&path).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::new(6));
    let mut tar = tar::Builder::new(gz);
    let mut h = tar::Header::new_ustar();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, format!("opt/{name}/file"), content)
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    path
}

#[test]
fn blobs_roundtrip_and_verify() {
    let Some(reg) = TestRegistry::plain() else {
        return;
    };
    let r = Reference::parse(&reg.mirror_url(&unique_repo("blobs"))).unwrap();
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let data = Bytes::from_static(b"hello blob");
        let d = Digest::of_bytes(&data);
        assert!(!c.repository(&r).blob_exists(&d).await.unwrap());
        assert!(c
            .repository(&r)
            .upload_blob(&BlobSource::Bytes(data.clone()), &d, false)
            .await
            .unwrap());
        assert!(c.repository(&r).blob_exists(&d).await.unwrap());
        // Present: not uploaded again.
        assert!(!c
            .repository(&r)
            .upload_blob(&BlobSource::Bytes(data.clone()), &d, false)
            .await
            .unwrap());
        let dest = dir.path().join("out");
        let out = c.repository(&r).fetch_blob(&d, &dest).await.unwrap();
        assert_eq!(out.size, 10);
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello blob");

        // Missing blob: NotFound, nothing written, no temp file left.
        let missing = Digest::of_bytes(b"nope");
        let dest2 = dir.path().join("missing");
        let e = c
            .repository(&r)
            .fetch_blob(&missing, &dest2)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains(&missing.to_string()), "{e}");
        assert!(!dest2.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");

        // A file upload, streamed.
        let file = dir.path().join("big");
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &big).unwrap();
        let bd = Digest::of_bytes(&big);
        assert!(c
            .repository(&r)
            .upload_blob(&BlobSource::File(file.clone()), &bd, false)
            .await
            .unwrap());
        let dest3 = dir.path().join("big.out");
        c.repository(&r).fetch_blob(&bd, &dest3).await.unwrap();
        assert_eq!(std::fs::read(&dest3).unwrap(), big);
    });
}

#[test]
fn digest_mismatch_on_upload_is_refused() {
    let Some(reg) = TestRegistry::plain() else {
        return;
    };
    let r = Reference::parse(&reg.mirror_url(&unique_repo("mismatch"))).unwrap();
    let c = client();
    rt().block_on(async {
        let wrong = Digest::of_bytes(b"other");
        let e = c
            .repository(&r)
            .upload_blob(
                &BlobSource::Bytes(Bytes::from_static(b"data")),
                &wrong,
                true,
            )
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{e}");
        assert!(e.has_code("DIGEST_INVALID"), "{e}");
    });
}

#[test]
fn tags_pagination() {
    let Some(reg) = TestRegistry::plain() else {
        return;
    };
    let repo = unique_repo("tags");
    let r = Reference::parse(&reg.mirror_url(&repo)).unwrap();
    let c = client();
    let cfg = reg.put_blob(&repo, b"{}");
    let manifest = json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":cfg,"size":2},"layers":[]});
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let mut expected = Vec::new();
    for i in 0..7 {
        let t = format!("t{i}.spack");
        reg.put_manifest(
            &repo,
            &t,
            "application/vnd.oci.image.manifest.v1+json",
            &bytes,
        );
        expected.push(t);
    }
    rt().block_on(async {
        assert_eq!(c.repository(&r).list_tags().await.unwrap(), expected);
        // Pages of 2: the registry sends Link headers, which must be followed.
        assert_eq!(
            c.repository(&r).list_tags_paged(Some(2)).await.unwrap(),
            expected
        );
        // A repository that does not exist has no tags.
        let none = Reference::parse(&reg.mirror_url("does-not-exist")).unwrap();
        assert!(c.repository(&none).list_tags().await.unwrap().is_empty());
    });
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario, read top to bottom
fn push_plan_index_and_errors() {
    let Some(reg) = TestRegistry::plain() else {
        return;
    };
    let repo = unique_repo("push");
    let target = Reference::parse(&reg.mirror_url(&repo)).unwrap();
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    let dep = make_tarball(dir.path(), "dep", b"dependency");
    let root = make_tarball(dir.path(), "root", b"root package");
    let missing = dir.path().join("missing.tar.gz");
    let item = |key: &str, path: &Path, layers: &[&str]| {
        let mut it = PushItem::new(format!("{key}-1.0-{key}hash.spack"));
        it.key = key.to_string();
        it.layer = Some(LayerSource::Tarball {
            path: path.to_path_buf(),
            diff_id: None,
        });
        it.layers = layers.iter().map(|s| (*s).to_string()).collect();
        let mut extra = serde_json::Map::new();
        extra.insert("spec".into(), json!({"name": key}));
        extra.insert("binary_cache_checksum".into(), json!(null));
        extra.insert("archive_size".into(), json!(null));
        extra.insert("archive_compression".into(), json!("gzip"));
        it.extra_config = Some(extra);
        it.fill_checksum = true;
        it
    };
    let plan = |force: bool| PushPlan {
        target: target.clone(),
        base_image: None,
        items: vec![
            item("dep", &dep, &["dep"]),
            item("root", &root, &["dep", "root"]),
            item("broken", &missing, &["broken"]),
        ],
        known_layers: HashMap::new(),
        listed_tags: None,
        options: PushOptions {
            force,
            jobs: 2,
            ..PushOptions::default()
        },
        progress: None,
        signer: None,
    };
    let rt = rt();
    let results = rt.block_on(push::push(&c, plan(false)));
    assert_eq!(
        results[0].status,
        push::ItemStatus::Pushed,
        "{:?}",
        results[0].error
    );
    assert_eq!(
        results[1].status,
        push::ItemStatus::Pushed,
        "{:?}",
        results[1].error
    );
    assert_eq!(results[2].status, push::ItemStatus::Failed);
    let err = results[2].error.as_ref().unwrap();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("missing.tar.gz"), "{err}");
    assert!(!reg
        .list_tags(&repo)
        .contains(&"broken-1.0-brokenhash.spack".to_string()));

    rt.block_on(async {
        // The root image holds both layers, bottom first, and its config the diff ids and
        // checksum fields in place.
        let im = c
            .repository(&target)
            .get_manifest_and_config("root-1.0-roothash.spack", "amd64", 0)
            .await
            .unwrap();
        let layers = im.manifest.layers().unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(
            Some(&layers[0].digest),
            results[0].layer.as_ref().map(|l| &l.digest)
        );
        assert_eq!(
            Some(&layers[1].digest),
            results[1].layer.as_ref().map(|l| &l.digest)
        );
        let keys: Vec<&String> = im.config.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "architecture",
                "os",
                "rootfs",
                "config",
                "spec",
                "binary_cache_checksum",
                "archive_size",
                "archive_compression"
            ]
        );
        assert_eq!(
            im.config["binary_cache_checksum"]["hash"],
            results[1].layer.as_ref().unwrap().digest.hex()
        );
        assert_eq!(im.config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(im.config["config"]["Env"], json!(["PATH=/bin:/usr/bin"]));
        // Compact JSON, as Spack writes it.
        assert!(!im.config_bytes.windows(2).any(|w| w == b": " || w == b", "));
    });

    // Re-push: everything that exists is skipped, the broken one fails again.
    let again = rt.block_on(push::push(&c, plan(false)));
    assert_eq!(again[0].status, push::ItemStatus::Skipped);
    assert_eq!(again[1].status, push::ItemStatus::Skipped);
    // Nothing to push stacks their layers: not looked up.
    assert_eq!(again[0].layer, None);
    // Forced: pushed again, same layers.
    let forced = rt.block_on(push::push(&c, plan(true)));
    assert_eq!(forced[1].status, push::ItemStatus::Pushed);
    assert_eq!(forced[1].layer, results[1].layer);

    rt.block_on(async {
        let idx = spack_oci_rs::index::index_configs(&c, &target, 8)
            .await
            .unwrap();
        assert_eq!(idx.spec_tags, 2);
        assert_eq!(idx.configs.len(), 2);
        let d = spack_oci_rs::index::upload_index(
            &c,
            &target,
            Bytes::from_static(b"{\"database\":{}}"),
        )
        .await
        .unwrap();
        let (layer, bytes) = spack_oci_rs::index::fetch_index(&c, &target, None, None)
            .await
            .unwrap()
            .unwrap();
        let bytes = bytes.unwrap();
        assert_eq!(bytes.as_ref(), b"{\"database\":{}}");
        assert_eq!(layer, Digest::of_bytes(&bytes));
        let fresh = spack_oci_rs::index::fetch_index(&c, &target, Some(&layer), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fresh, (layer.clone(), None));
        let m = c
            .repository(&target)
            .get_manifest("index.spack")
            .await
            .unwrap();
        assert_eq!(m.digest, d);
        // index.spack is not a spec tag.
        let idx = spack_oci_rs::index::index_configs(&c, &target, 8)
            .await
            .unwrap();
        assert_eq!(idx.spec_tags, 2);
    });

    // A vanished manifest during indexing is skipped, not fatal.
    let root_digest = forced[1].manifest_digest.clone().unwrap();
    reg.delete_manifest(&repo, &root_digest.to_string());
    rt.block_on(async {
        let idx = spack_oci_rs::index::index_configs(&c, &target, 8)
            .await
            .unwrap();
        assert_eq!(idx.configs.len(), 1);
        assert_eq!(idx.configs[0].tag, "dep-1.0-dephash.spack");
    });
}

#[test]
fn tls_with_and_without_ca() {
    let Some(reg) = TestRegistry::tls() else {
        return;
    };
    let r = Reference::parse(&reg.mirror_url(&unique_repo("tls"))).unwrap();
    rt().block_on(async {
        assert!(client_for(&reg)
            .repository(&r)
            .list_tags()
            .await
            .unwrap()
            .is_empty());
        let e = client().repository(&r).list_tags().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
        assert!(e.to_string().contains("ssl_certs"), "{e}");
        let o = ClientOptions {
            verify_tls: false,
            ..ClientOptions::default()
        };
        assert!(Client::new(o)
            .unwrap()
            .repository(&r)
            .list_tags()
            .await
            .unwrap()
            .is_empty());
    });
}

#[test]
fn basic_auth() {
    let Some(reg) = TestRegistry::tls_auth() else {
        return;
    };
    let repo = unique_repo("auth");
    let r = Reference::parse(&reg.mirror_url(&repo)).unwrap();
    let (_, password) = reg.credentials().unwrap();
    let password = password.to_string();
    rt().block_on(async {
        let c = client_for(&reg);
        let d = Digest::of_bytes(b"x");
        assert!(c
            .repository(&r)
            .upload_blob(&BlobSource::Bytes(Bytes::from_static(b"x")), &d, false)
            .await
            .unwrap());
        assert!(c.repository(&r).blob_exists(&d).await.unwrap());

        // No credentials: a clear error naming the registry and what to configure.
        let mut o = ClientOptions {
            ca_certs: vec![reg.ca_file().unwrap()],
            ..ClientOptions::default()
        };
        let anon = Client::new(o.clone()).unwrap();
        let e = anon.repository(&r).blob_exists(&d).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
        assert!(e.to_string().contains(&reg.host()), "{e}");
        assert!(e.to_string().contains("--oci-username-variable"), "{e}");

        // Wrong password: rejected, and the secret appears nowhere.
        let mut creds = StaticCredentials::new();
        creds.insert(reg.host(), Credentials::new("spack", "not-the-password"));
        o.credentials = std::sync::Arc::new(creds);
        let wrong = Client::new(o).unwrap();
        let e = wrong.repository(&r).blob_exists(&d).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
        assert!(!e.to_string().contains("not-the-password"));
        assert!(!e.to_string().contains(&password));
    });
}

#[test]
fn registry_down_and_bad_manifest() {
    let Some(mut reg) = TestRegistry::plain() else {
        return;
    };
    let repo = unique_repo("down");
    let r = Reference::parse(&reg.mirror_url(&repo)).unwrap();
    let c = client();
    // Not JSON under a manifest media type.
    reg.put_blob(&repo, b"x");
    rt().block_on(async {
        let e = c.repository(&r).get_manifest("nothing").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.to_string()
                .contains(&format!("{}/{repo}:nothing", reg.host())),
            "{e}"
        );
    });
    reg.stop();
    rt().block_on(async {
        // A registry that is down is reported at once, naming it, and not retried.
        let t = std::time::Instant::now();
        let e = c.repository(&r).list_tags().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
        assert!(!e.is_retryable());
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("registry {} is unreachable", reg.host())),
            "{e}"
        );
        assert!(!text.contains("attempts"), "{e}");
        // Later requests to it fail at once with the same error.
        let again = c.repository(&r).blob_exists(&Digest::of_bytes(b"x")).await;
        assert_eq!(again.unwrap_err().to_string(), text);
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    });
}
