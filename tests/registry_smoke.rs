//! The test registry itself (tests/common): starts, answers, speaks TLS with the test CA
//! (checked with rustls, the crate's TLS stack), checks passwords, stores what it is given,
//! and is gone after drop.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::{raw_http, unique_repo, TestRegistry};

fn port_closed(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
}

#[test]
fn plain_registry_answers_and_stops() {
    let Some(mut reg) = TestRegistry::plain() else {
        return;
    };
    assert!(reg.host().starts_with("127.0.0.1:"));
    assert_eq!(reg.url(), format!("oci+http://{}", reg.host()));
    assert_eq!(
        reg.mirror_url("a/b"),
        format!("oci+http://{}/a/b", reg.host())
    );
    assert_eq!(reg.base_url(), format!("http://{}", reg.host()));
    assert!(reg.ca_file().is_none());

    // A hand-written request on a bare TcpStream, as a client would send it.
    let mut stream = TcpStream::connect(("127.0.0.1", reg.port())).unwrap();
    std::io::Write::write_all(
        &mut stream,
        format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            reg.host()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("Docker-Distribution-Api-Version: registry/2.0"),
        "{answer}"
    );

    let r = reg.request("GET", "/v2/", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert!(reg.is_running());

    let port = reg.port();
    drop(reg);
    assert!(port_closed(port), "registry still listening after drop");
}

#[test]
fn stores_blobs_and_manifests() {
    let Some(reg) = TestRegistry::plain() else {
        return;
    };
    let repo = unique_repo("smoke/store");
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = reg.put_blob(&repo, config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    let digest = reg.put_manifest(&repo, "v1", media_type, manifest.as_bytes());
    assert_eq!(reg.list_tags(&repo), ["v1"]);

    let got = reg.get_manifest(&repo, "v1").unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.body, manifest.as_bytes());
    assert_eq!(got.header("content-type"), Some(media_type));
    assert_eq!(got.header("docker-content-digest"), Some(digest.as_str()));
    let blob = reg
        .request(
            "GET",
            &format!("/v2/{repo}/blobs/{config_digest}"),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(blob.body, config);

    // Deletes are enabled (for "manifest vanished" tests); the tag goes with the manifest.
    reg.delete_manifest(&repo, &digest);
    assert_eq!(reg.get_manifest(&repo, &digest).unwrap().status, 404);
    assert_eq!(reg.get_manifest(&repo, "v1").unwrap().status, 404);
    assert!(reg.list_tags(&repo).is_empty());
}

#[test]
fn tls_registry_verifies_with_the_test_ca() {
    let Some(reg) = TestRegistry::tls() else {
        return;
    };
    assert_eq!(reg.url(), format!("oci://{}", reg.host()));
    assert_eq!(reg.mirror_url("x"), format!("oci://{}/x", reg.host()));
    let ca = reg.ca_pem().expect("TLS registry has a CA");
    assert!(reg.cert_dir().unwrap().join("ca.crt").is_file());
    // The CA file is alone in its directory (usable as a directory of CA files).
    let ca_dir = reg.ca_file().unwrap().parent().unwrap().to_owned();
    assert_eq!(std::fs::read_dir(ca_dir).unwrap().count(), 1);

    // rustls (webpki) accepts the openssl-made chain for 127.0.0.1.
    let r = raw_http(reg.port(), Some(&ca), "GET", "/v2/", &[], b"").unwrap();
    assert_eq!(r.status, 200);

    // Trusting another CA fails the handshake.
    let other = tempfile::tempdir().unwrap();
    common::make_certificates(other.path());
    let other_ca = std::fs::read(other.path().join("ca/ca.pem")).unwrap();
    let err = raw_http(reg.port(), Some(&other_ca), "GET", "/v2/", &[], b"").unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("certificate"),
        "{err}"
    );

    // Plain HTTP on the TLS port gets Go's 400.
    let r = raw_http(reg.port(), None, "GET", "/v2/", &[], b"").unwrap();
    assert_eq!(r.status, 400);
}

#[test]
fn auth_registry_checks_passwords() {
    let Some(reg) = TestRegistry::tls_auth() else {
        return;
    };
    let (user, password) = reg.credentials().expect("auth registry has credentials");
    assert_eq!(user, "spack");
    let ca = reg.ca_pem().unwrap();
    let basic = |u: &str, p: &str| {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        vec![("Authorization".to_owned(), format!("Basic {token}"))]
    };

    let anonymous = raw_http(reg.port(), Some(&ca), "GET", "/v2/", &[], b"").unwrap();
    assert_eq!(anonymous.status, 401);
    assert!(anonymous
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic realm="));
    let wrong = raw_http(
        reg.port(),
        Some(&ca),
        "GET",
        "/v2/",
        &basic(user, "wrong"),
        b"",
    )
    .unwrap();
    assert_eq!(wrong.status, 401);
    let right = raw_http(
        reg.port(),
        Some(&ca),
        "GET",
        "/v2/",
        &basic(user, password),
        b"",
    )
    .unwrap();
    assert_eq!(right.status, 200);
    // request() sends the credentials itself.
    assert_eq!(reg.request("GET", "/v2/", &[], b"").unwrap().status, 200);
}

#[test]
fn registries_run_side_by_side() {
    let (Some(a), Some(b)) = (TestRegistry::plain(), TestRegistry::plain()) else {
        return;
    };
    assert_ne!(a.port(), b.port());
    let repo = unique_repo("side");
    a.put_blob(&repo, b"only in a");
    assert!(b.list_tags(&repo).is_empty());
    assert_eq!(
        b.request(
            "HEAD",
            &format!("/v2/{repo}/blobs/{}", common::sha256_digest(b"only in a")),
            &[],
            b""
        )
        .unwrap()
        .status,
        404
    );
}
