//! Test support for integration tests: a real OCI registry (the CNCF distribution server,
//! `docker-registry`) started per test, on 127.0.0.1 with a free port and a temporary storage
//! directory, killed on drop.
//!
//! ```ignore
//! mod common;
//! use common::TestRegistry;
//!
//! #[test]
//! fn push_something() {
//!     let Some(reg) = TestRegistry::plain() else { return }; // skipped: no docker-registry
//!     let url = reg.mirror_url(&common::unique_repo("push")); // "oci+http://127.0.0.1:PORT/push-…"
//!     // ...
//! }
//! ```
//!
//! Variants: [`TestRegistry::plain`] (HTTP), [`TestRegistry::tls`] (HTTPS with a test CA made
//! by the `openssl` CLI: [`TestRegistry::ca_file`]) and [`TestRegistry::tls_auth`] (HTTPS +
//! htpasswd basic auth: [`TestRegistry::credentials`]). The certificate recipe is the same as
//! `tests/registry.py`'s.
//!
//! Without `docker-registry`/`openssl` (or `htpasswd` for auth) on PATH, the constructors print
//! why and return `None`, except when `CI` is set: then they panic, since .ci/run installs them.
//!
//! [`TestRegistry::request`] talks HTTP/1.0 to the registry with std's `TcpStream` (and rustls
//! for TLS), independent of the crate's own client, to check what the registry holds.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

/// How long to wait for the registry to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Which kind of registry to start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// HTTPS with a test CA.
    pub tls: bool,
    /// htpasswd basic auth (user `spack`, a random password).
    pub auth: bool,
}

/// A running `docker-registry serve`; stopped (SIGKILL + wait) when dropped.
pub struct TestRegistry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    tls: bool,
    credentials: Option<(String, String)>,
}

/// An answer from [`TestRegistry::request`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Is CI running us (then missing tools are an error, not a skip)?
pub fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"))
}

/// Find `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A repository name no other test uses: `<hint>-<pid>-<n>-<nanos>` (lowercase, OCI-valid if
/// `hint` is).
pub fn unique_repo(hint: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{hint}-{}-{n}-{nanos:x}", std::process::id())
}

/// sha256 digest string of `data`: `sha256:<hex>`.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn skip_or_panic(reason: &str) -> Option<TestRegistry> {
    assert!(
        !in_ci(),
        "CI must run the registry tests, but {reason} (see .ci/run)"
    );
    eprintln!("SKIPPED: {reason} (install it to run this test; see .ci/run)");
    None
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const CA_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = spack-oci-rs test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
";

const SERVER_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,IP:::1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// Make a test CA and a server certificate for 127.0.0.1, ::1 and localhost (ECDSA P-256) in
/// `dir` with the openssl CLI: `ca/ca.pem` (the CA certificate, alone in `ca/`, so that
/// directory works as a directory of CA files), `certs.d/ca.crt` (the same, a `--cert-dir` for
/// skopeo), `server.pem` and `server.key`.
pub fn make_certificates(dir: &Path) {
    fs::create_dir_all(dir.join("ca")).unwrap();
    fs::write(dir.join("ca.cnf"), CA_CNF).unwrap();
    fs::write(dir.join("server.cnf"), SERVER_CNF).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-config", "ca.cnf"])
        .args(ec)
        .args([
            "-keyout",
            "ca.key",
            "-out",
            "ca/ca.pem",
            "-days",
            "30",
            "-sha256",
        ]));
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-new", "-config", "server.cnf"])
        .args(ec)
        .args(["-keyout", "server.key", "-out", "server.csr"]));
    let serial = format!("0x{:x}", rand::random::<u64>() | 1);
    run(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca/ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        &serial,
        "-days",
        "30",
        "-sha256",
        "-extfile",
        "server.cnf",
        "-extensions",
        "v3_server",
        "-out",
        "server.pem",
    ]));
    fs::create_dir_all(dir.join("certs.d")).unwrap();
    fs::copy(dir.join("ca/ca.pem"), dir.join("certs.d/ca.crt")).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("no free port on 127.0.0.1")
        .port()
}

fn yaml_str(s: &str) -> String {
    // JSON strings are valid YAML scalars.
    serde_json::to_string(s).unwrap()
}

impl TestRegistry {
    /// A plain-HTTP registry, or `None` (skipped) without docker-registry.
    pub fn plain() -> Option<Self> {
        Self::start(Options::default())
    }

    /// An HTTPS registry with a test CA ([`Self::ca_file`]).
    pub fn tls() -> Option<Self> {
        Self::start(Options {
            tls: true,
            auth: false,
        })
    }

    /// HTTPS + htpasswd basic auth ([`Self::credentials`]).
    pub fn tls_auth() -> Option<Self> {
        Self::start(Options {
            tls: true,
            auth: true,
        })
    }

    /// Start a registry; `None` means the tools are missing (and we are not in CI).
    pub fn start(opts: Options) -> Option<Self> {
        let mut needed = vec!["docker-registry"];
        if opts.tls {
            needed.push("openssl");
        }
        if opts.auth {
            needed.push("htpasswd");
        }
        let missing: Vec<&str> = needed.into_iter().filter(|p| which(p).is_none()).collect();
        if !missing.is_empty() {
            return skip_or_panic(&format!("not on PATH: {}", missing.join(", ")));
        }

        let dir = tempfile::Builder::new()
            .prefix("test-registry-")
            .tempdir()
            .expect("cannot make a temporary directory");
        fs::create_dir(dir.path().join("storage")).unwrap();
        if opts.tls {
            make_certificates(&dir.path().join("tls"));
        }
        let credentials = opts.auth.then(|| {
            let password = format!("pw-{:016x}", rand::random::<u64>());
            let out = run(Command::new("htpasswd").args(["-nbB", "-C", "4", "spack", &password]));
            let line = String::from_utf8(out.stdout).unwrap();
            fs::write(dir.path().join("htpasswd"), format!("{}\n", line.trim())).unwrap();
            ("spack".to_owned(), password)
        });

        let mut reg = TestRegistry {
            child: None,
            dir,
            port: 0,
            tls: opts.tls,
            credentials,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            reg.port = free_port();
            match reg.spawn_and_wait() {
                Ok(()) => return Some(reg),
                // Someone may have taken the port between our probe and the server's bind.
                Err(e) if attempt < 3 && reg.log().contains("address already in use") => {
                    eprintln!("retrying registry start: {e}");
                }
                Err(e) => panic!("{e}\n{}", reg.log_tail(60)),
            }
        }
    }

    fn config(&self) -> String {
        let d = self.dir.path();
        let mut c = String::new();
        c.push_str("version: 0.1\n");
        c.push_str("log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n");
        let _ = writeln!(
            c,
            "storage:\n  filesystem:\n    rootdirectory: {}",
            yaml_str(d.join("storage").to_str().unwrap())
        );
        c.push_str("  delete:\n    enabled: true\n  redirect:\n    disable: true\n");
        c.push_str("  maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: false\n");
        let _ = writeln!(c, "http:\n  addr: {}", yaml_str(&self.host()));
        let _ = writeln!(
            c,
            "  secret: {}",
            yaml_str(&format!("{:016x}", rand::random::<u64>()))
        );
        c.push_str("  headers:\n    X-Content-Type-Options: [nosniff]\n");
        if self.tls {
            let _ = writeln!(
                c,
                "  tls:\n    certificate: {}",
                yaml_str(d.join("tls/server.pem").to_str().unwrap())
            );
            let _ = writeln!(
                c,
                "    key: {}",
                yaml_str(d.join("tls/server.key").to_str().unwrap())
            );
        }
        if self.credentials.is_some() {
            c.push_str("auth:\n  htpasswd:\n    realm: spack-oci-rs-test\n");
            let _ = writeln!(
                c,
                "    path: {}",
                yaml_str(d.join("htpasswd").to_str().unwrap())
            );
        }
        // No `health:` section: no storage-driver health checks.
        c
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let config = self.dir.path().join("config.yml");
        fs::write(&config, self.config()).unwrap();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .unwrap();
        // `setpriv --pdeathsig` (util-linux): the server gets SIGTERM if the thread that started
        // it dies without dropping us (a SIGKILLed test binary), so no registry outlives its
        // tests. Keep a TestRegistry in the thread that made it.
        let mut cmd = if which("setpriv").is_some() {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "TERM", "--", "docker-registry"]);
            c
        } else {
            Command::new("docker-registry")
        };
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(
            cmd.spawn()
                .map_err(|e| format!("cannot start docker-registry: {e}"))?,
        );

        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "docker-registry exited with {status} while starting"
                ));
            }
            // It logs "listening on" once its TLS config is loaded and the socket is bound.
            if self.log().contains("listening on") {
                match self.request("GET", "/v2/", &[], b"") {
                    Ok(r) if r.status == 200 || r.status == 401 => return Ok(()),
                    Ok(r) => last = format!("GET /v2/ answered {}", r.status),
                    Err(e) => last = e,
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        Err(format!(
            "docker-registry did not answer GET /v2/ within {START_TIMEOUT:?}: {last}"
        ))
    }

    /// Kill the server and reap it (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Is the server process still running?
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// The Spack mirror URL of the registry: `oci+http://HOST` or `oci://HOST`.
    pub fn url(&self) -> String {
        if self.tls {
            format!("oci://{}", self.host())
        } else {
            format!("oci+http://{}", self.host())
        }
    }

    /// Spack mirror URL of a repository: `oci+http://HOST/<repo>` or `oci://HOST/<repo>`.
    pub fn mirror_url(&self, repo: &str) -> String {
        format!("{}/{repo}", self.url())
    }

    /// The test CA certificate (PEM file) for TLS registries, alone in its directory.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("tls/ca/ca.pem"))
    }

    /// The test CA certificate, PEM bytes.
    pub fn ca_pem(&self) -> Option<Vec<u8>> {
        self.ca_file().map(|p| fs::read(p).unwrap())
    }

    /// A directory holding only `ca.crt` (skopeo's `--cert-dir`).
    pub fn cert_dir(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("tls/certs.d"))
    }

    /// `(username, password)` of an auth registry.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The work directory (config.yml, registry.log, storage/, tls/).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The server's log (stdout and stderr) so far.
    pub fn log(&self) -> String {
        fs::read(self.log_file())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        format!(
            "--- {} (last {} lines) ---\n{}",
            self.log_file().display(),
            tail.len(),
            tail.join("\n")
        )
    }

    /// One HTTP/1.0 request to the registry (TLS via rustls with the test CA), with the
    /// known credentials as Basic auth on an auth registry. Any status is `Ok`; `Err` is a
    /// connection/TLS/protocol failure.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<RawResponse, String> {
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some((user, password)) = self.credentials() {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                all.push(("Authorization".to_owned(), format!("Basic {token}")));
            }
        }
        let ca = self.ca_pem();
        raw_http(self.port, ca.as_deref(), method, path, &all, body)
    }

    /// GET a manifest by tag or digest (any manifest media type).
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<RawResponse, String> {
        self.request(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", ALL_MANIFESTS)],
            b"",
        )
    }

    /// Tags of `repo` (empty if it does not exist).
    pub fn list_tags(&self, repo: &str) -> Vec<String> {
        let r = self
            .request("GET", &format!("/v2/{repo}/tags/list?n=10000"), &[], b"")
            .unwrap();
        if r.status == 404 {
            return Vec::new();
        }
        assert_eq!(r.status, 200, "tags/list: {}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Upload a blob: POST to open an upload, then one PUT with the bytes and `?digest=`.
    /// (distribution 2.8 has no single-POST monolithic upload: it answers `POST ?digest=`
    /// with 202 and ignores the body.) Returns the digest.
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let r = self
            .request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"")
            .unwrap();
        assert_eq!(r.status, 202, "blob upload POST: {}", r.text());
        let location = r.header("location").expect("no Location in upload answer");
        // Absolute URL (distribution sends one) or path: keep the path and query.
        let path = match location.find("://") {
            Some(i) => {
                &location[location[i + 3..]
                    .find('/')
                    .map_or(location.len(), |j| i + 3 + j)..]
            }
            None => location,
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = self
            .request(
                "PUT",
                &format!("{path}{sep}digest={digest}"),
                &[("Content-Type", "application/octet-stream")],
                data,
            )
            .unwrap();
        assert_eq!(r.status, 201, "blob upload PUT: {}", r.text());
        digest
    }

    /// PUT a manifest under `reference` (tag or digest); returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        data: &[u8],
    ) -> String {
        let r = self
            .request(
                "PUT",
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("Content-Type", media_type)],
                data,
            )
            .unwrap();
        assert_eq!(r.status, 201, "manifest PUT: {}", r.text());
        sha256_digest(data)
    }

    /// Delete a manifest by digest (distribution 2.8 refuses deletes by tag); its tags go too.
    pub fn delete_manifest(&self, repo: &str, digest: &str) {
        let r = self
            .request(
                "DELETE",
                &format!("/v2/{repo}/manifests/{digest}"),
                &[],
                b"",
            )
            .unwrap();
        assert_eq!(r.status, 202, "manifest DELETE: {}", r.text());
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(60));
        }
        self.stop();
    }
}

/// Accept header asking for any manifest type.
pub const ALL_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// A rustls client config trusting only `ca_pem` (ring provider; no process default needed).
pub fn rustls_config(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.expect("bad PEM"))
            .expect("bad CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A bare HTTP/1.0 exchange with 127.0.0.1:`port` (HTTPS when `ca_pem` is given, the server
/// name being `127.0.0.1`). HTTP/1.0 so the answer is never chunked and ends at EOF.
pub fn raw_http(
    port: u16,
    ca_pem: Option<&[u8]>,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<RawResponse, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: spack-oci-rs-tests\r\n"
    );
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        let _ = write!(req, "Content-Length: {}\r\n", body.len());
    }
    req.push_str("\r\n");

    let mut raw = Vec::new();
    if let Some(ca) = ca_pem {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(rustls_config(ca), name)
            .map_err(|e| format!("tls: {e}"))?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        exchange(&mut tls, req.as_bytes(), body, &mut raw).map_err(|e| format!("tls: {e}"))?;
    } else {
        exchange(&mut tcp, req.as_bytes(), body, &mut raw).map_err(|e| format!("http: {e}"))?;
    }
    parse_response(&raw)
}

fn exchange<S: Read + Write>(
    s: &mut S,
    head: &[u8],
    body: &[u8],
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    s.write_all(head)?;
    s.write_all(body)?;
    s.flush()?;
    match s.read_to_end(out) {
        // Go closes TLS without close_notify after an HTTP/1.0 answer: all data is in.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => Ok(()),
        r => r.map(|_| ()),
    }
}

fn parse_response(raw: &[u8]) -> Result<RawResponse, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header end in {:?}", String::from_utf8_lossy(raw)))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| format!("header not UTF-8: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(RawResponse {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}
