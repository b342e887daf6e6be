//! Credential sources beyond explicit ones: Docker's and podman's login files
//! (`config.json`, `auth.json`) with their credential helpers, and a chain that asks
//! several sources in order.
//!
//! [`DockerConfig`] reads what `docker login` / `podman login` leave behind:
//! - `auths`: `{"<registry>": {"auth": base64("user:password")}}`, or `username`/`password`
//!   fields, an `identitytoken` (an OAuth2 refresh token, e.g. from `az acr login`) or a
//!   `registrytoken` (a bearer token for the registry itself);
//! - `credHelpers`: `{"<registry>": "<name>"}` and `credsStore`: `"<name>"`: the credentials
//!   live in a credential helper, `docker-credential-<name>`, run as Docker runs it: `get`
//!   as its argument, the server address on stdin, `{"Username","Secret"}` JSON on stdout
//!   (`Username` `<token>` meaning the secret is an identity token).
//!
//! Files are looked up in the order podman (containers-auth.json(5)) uses:
//! `$REGISTRY_AUTH_FILE` (else `$XDG_RUNTIME_DIR/containers/auth.json`),
//! `$XDG_CONFIG_HOME/containers/auth.json` (else `~/.config/containers/auth.json`), then
//! Docker's `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`); the first file with
//! an entry for the registry answers. Registry keys are matched by host (`https://` and paths
//! stripped; Docker Hub's `https://index.docker.io/v1/` matches `docker.io`,
//! `index.docker.io` and `registry-1.docker.io`).
//!
//! Answers are cached per registry for the life of the provider (one helper run per
//! registry); a helper that fails or hangs (30 s) is reported in [`DockerConfig::source`] and
//! treated as "no credentials".

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::auth::{CredentialProvider, Credentials};

/// How long a credential helper may take.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// Docker Hub's key in `auths` and the server address its helpers are asked for.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// Config files larger than this are ignored.
const MAX_CONFIG_SIZE: u64 = 4 * 1024 * 1024;

/// What a lookup found for one registry.
#[derive(Clone)]
enum Found {
    Creds {
        creds: Credentials,
        source: String,
    },
    /// Nothing for this registry (or only errors, kept for `source`).
    None {
        problems: Vec<String>,
    },
}

/// Credentials from Docker's `config.json` / podman's `auth.json` and credential helpers.
pub struct DockerConfig {
    files: Vec<PathBuf>,
    cache: Mutex<HashMap<String, Arc<OnceLock<Found>>>>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home() -> Option<PathBuf> {
    env_path("HOME")
}

/// The login files looked at, in order (whether or not they exist), from the environment.
pub fn default_config_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(p) = env_path("REGISTRY_AUTH_FILE") {
        files.push(p);
    } else if let Some(run) = env_path("XDG_RUNTIME_DIR") {
        files.push(run.join("containers").join("auth.json"));
    }
    if let Some(cfg) = env_path("XDG_CONFIG_HOME").or_else(|| home().map(|h| h.join(".config"))) {
        files.push(cfg.join("containers").join("auth.json"));
    }
    if let Some(d) = env_path("DOCKER_CONFIG") {
        files.push(d.join("config.json"));
    } else if let Some(h) = home() {
        files.push(h.join(".docker").join("config.json"));
    }
    files
}

/// A registry key or name reduced to the host it names: scheme and path stripped,
/// lowercased, Docker Hub's aliases folded into `index.docker.io`.
pub fn normalize_registry(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "index.docker.io".to_string()
        }
        _ => host,
    }
}

impl DockerConfig {
    /// The default files (see the module documentation).
    pub fn from_env() -> Self {
        Self::with_files(default_config_files())
    }

    /// Only this file (a `config.json` or `auth.json`).
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self::with_files(vec![path.into()])
    }

    pub fn with_files(files: Vec<PathBuf>) -> Self {
        Self {
            files,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The files looked at, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn found(&self, registry: &str) -> Found {
        let cell = self
            .cache
            .lock()
            .expect("docker config cache")
            .entry(registry.to_string())
            .or_default()
            .clone();
        cell.get_or_init(|| blocking(|| self.lookup(registry)))
            .clone()
    }

    fn lookup(&self, registry: &str) -> Found {
        let want = normalize_registry(registry);
        let mut problems = Vec::new();
        for file in &self.files {
            match lookup_file(file, &want) {
                Ok(Some((creds, source))) => return Found::Creds { creds, source },
                Ok(None) => {}
                Err(problem) => {
                    tracing::warn!(registry, %problem, "docker config");
                    problems.push(problem);
                }
            }
        }
        Found::None { problems }
    }
}

/// Run blocking work from async code without stalling the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl CredentialProvider for DockerConfig {
    fn credentials(&self, registry: &str) -> Option<Credentials> {
        match self.found(registry) {
            Found::Creds { creds, .. } => Some(creds),
            Found::None { .. } => None,
        }
    }

    fn source(&self, registry: &str) -> Option<String> {
        match self.found(registry) {
            Found::Creds { creds, source } => Some(format!("{} from {source}", creds.what())),
            Found::None { .. } => None,
        }
    }

    fn describe(&self, registry: &str) -> String {
        match self.found(registry) {
            Found::Creds { creds, source } => format!("{} from {source}", creds.what()),
            Found::None { problems } if problems.is_empty() => format!(
                "none (no entry for {registry} in {})",
                self.files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Found::None { problems } => format!("none ({})", problems.join("; ")),
        }
    }
}

/// Look `want` (a normalized registry) up in one file: `Ok(None)` when the file does not
/// exist or has no entry for it.
fn lookup_file(file: &Path, want: &str) -> Result<Option<(Credentials, String)>, String> {
    let meta = match std::fs::metadata(file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    if meta.len() > MAX_CONFIG_SIZE {
        return Err(format!("{} is too large", file.display()));
    }
    let text = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let json: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}", file.display()))?;
    let shown = file.display();

    // credHelpers[registry], else credsStore, else the `auths` entry.
    let helper_for = json
        .get("credHelpers")
        .and_then(serde_json::Value::as_object)
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| normalize_registry(k) == want)
                .and_then(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
        });
    let auth_entry = json
        .get("auths")
        .and_then(serde_json::Value::as_object)
        .and_then(|m| m.iter().find(|(k, _)| normalize_registry(k) == want));
    if let Some((key, helper)) = helper_for {
        let server = helper_server(&key, want);
        return run_helper(&helper, &server).map(|c| {
            c.map(|c| {
                (
                    c,
                    format!("docker-credential-{helper} (credHelpers in {shown})"),
                )
            })
        });
    }
    if let Some(store) = json
        .get("credsStore")
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let key = auth_entry.map_or(want, |(k, _)| k.as_str());
        let server = helper_server(key, want);
        match run_helper(store, &server) {
            Ok(Some(c)) => {
                return Ok(Some((
                    c,
                    format!("docker-credential-{store} (credsStore in {shown})"),
                )))
            }
            // Not in the store: an `auths` entry of this file may still have them.
            Ok(None) => {}
            Err(e) => return Err(e),
        }
    }
    let Some((key, entry)) = auth_entry else {
        return Ok(None);
    };
    let source = format!("{shown} (auths[{key:?}])");
    parse_auth_entry(entry)
        .map(|c| c.map(|c| (c, source)))
        .map_err(|e| format!("{shown}: auths[{key:?}]: {e}"))
}

/// The server address a helper is asked about: Docker Hub's v1 URL, else the key as
/// written in the file (Docker passes what `docker login` stored).
fn helper_server(key: &str, want: &str) -> String {
    if want == "index.docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        key.to_string()
    }
}

fn parse_auth_entry(entry: &serde_json::Value) -> Result<Option<Credentials>, String> {
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (mut username, mut password) = (
        field("username").map(str::to_string),
        field("password").map(str::to_string),
    );
    if let Some(auth) = field("auth") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| "the `auth` field is not base64".to_string())?;
        let raw =
            String::from_utf8(raw).map_err(|_| "the `auth` field is not UTF-8".to_string())?;
        let (u, p) = raw
            .split_once(':')
            .ok_or_else(|| "the `auth` field is not `username:password`".to_string())?;
        username = Some(u.to_string());
        password = Some(p.to_string());
    }
    if let Some(t) = field("registrytoken") {
        return Ok(Some(Credentials::bearer_token(t)));
    }
    if let Some(t) = field("identitytoken") {
        return Ok(Some(Credentials::identity_token(
            username.unwrap_or_default(),
            t,
        )));
    }
    match (username, password) {
        (Some(u), Some(p)) if !p.is_empty() => Ok(Some(Credentials::new(u, p))),
        _ => Ok(None),
    }
}

/// Run `docker-credential-<name> get` for `server`: `Ok(None)` when the helper has nothing
/// for it, `Err` (a message without secrets) when it cannot run or fails otherwise.
pub fn run_helper(name: &str, server: &str) -> Result<Option<Credentials>, String> {
    run_helper_with_timeout(name, server, HELPER_TIMEOUT)
}

fn run_helper_with_timeout(
    name: &str,
    server: &str,
    timeout: Duration,
) -> Result<Option<Credentials>, String> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(format!("invalid credential helper name {name:?}"));
    }
    let program = format!("docker-credential-{name}");
    run_program(Path::new(&program), &program, server, timeout)
}

/// Wait for `child` to exit, killing it after `timeout`.
fn wait_for(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Result<std::process::ExitStatus, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not answer within {}s", timeout.as_secs()));
            }
            Err(e) => return Err(format!("waiting: {e}")),
        }
    }
}
fn run_program(
    path: &Path,
    program: &str,
    server: &str,
    timeout: Duration,
) -> Result<Option<Credentials>, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let mut child = Command::new(path)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its exit status below.
        let _ = stdin.write_all(server.as_bytes());
    }
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(1024 * 1024).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read_all(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = read_all(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status =
        wait_for(&mut child, timeout).map_err(|e| format!("{program} get {server}: {e}"))?;
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        let text = String::from_utf8_lossy(if stderr.is_empty() { &stdout } else { &stderr });
        let text = text.trim();
        // Docker's helpers say this (exit 1) when they have nothing for the server.
        if text.contains("credentials not found") || text.is_empty() {
            return Ok(None);
        }
        let first: String = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        return Err(format!("{program} get {server} failed ({status}): {first}"));
    }
    let answer: Answer = serde_json::from_slice(&stdout)
        .map_err(|_| format!("{program} get {server} printed no credentials JSON"))?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if answer.username == "<token>" {
        Credentials::identity_token("", answer.secret)
    } else {
        Credentials::new(answer.username, answer.secret)
    }))
}

/// Several credential sources asked in order; the first that has credentials for a
/// registry answers (explicit credentials first, then the docker config).
#[derive(Debug, Default)]
pub struct ChainCredentials {
    providers: Vec<Arc<dyn CredentialProvider>>,
}

impl ChainCredentials {
    pub fn new(providers: Vec<Arc<dyn CredentialProvider>>) -> Self {
        Self { providers }
    }

    #[must_use]
    pub fn then(mut self, provider: Arc<dyn CredentialProvider>) -> Self {
        self.providers.push(provider);
        self
    }
}

impl CredentialProvider for ChainCredentials {
    fn credentials(&self, registry: &str) -> Option<Credentials> {
        self.providers.iter().find_map(|p| p.credentials(registry))
    }

    fn source(&self, registry: &str) -> Option<String> {
        self.providers.iter().find_map(|p| p.source(registry))
    }

    fn describe(&self, registry: &str) -> String {
        if let Some(s) = self.source(registry) {
            return s;
        }
        // Nothing anywhere: say where we looked (the last source's own account).
        self.providers
            .last()
            .map_or_else(|| "none (anonymous)".to_string(), |p| p.describe(registry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::auth::{SecretKind, StaticCredentials};

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn normalizes_keys() {
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(normalize_registry("docker.io"), "index.docker.io");
        assert_eq!(
            normalize_registry("registry-1.docker.io"),
            "index.docker.io"
        );
        assert_eq!(
            normalize_registry("http://Reg.Example:5000/v2/"),
            "reg.example:5000"
        );
        assert_eq!(normalize_registry("ghcr.io"), "ghcr.io");
        assert_eq!(normalize_registry("quay.io/org/repo"), "quay.io");
    }

    #[test]
    fn auths_entries() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        let json = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpw")},
                "reg.example:5000": {"username": "user-two", "password": "secret-pw-two"},
                "https://acr.example/": {"auth": b64("00000000-0000-0000-0000-000000000000:"), "identitytoken": "refresh-tok"},
                "tok.example": {"registrytoken": "bearer-tok"},
                "empty.example": {},
                "bad.example": {"auth": "%%%"}
            }
        });
        std::fs::write(&file, json.to_string()).unwrap();
        let dc = DockerConfig::from_file(&file);
        let c = dc.credentials("index.docker.io").unwrap();
        assert_eq!(
            (c.username.as_str(), c.secret.as_str()),
            ("hubuser", "hubpw")
        );
        let c = dc.credentials("reg.example:5000").unwrap();
        assert_eq!(
            (c.username.as_str(), c.kind),
            ("user-two", SecretKind::Password)
        );
        let c = dc.credentials("acr.example").unwrap();
        assert_eq!(c.kind, SecretKind::IdentityToken);
        assert_eq!(c.secret, "refresh-tok");
        let c = dc.credentials("tok.example").unwrap();
        assert_eq!(c.kind, SecretKind::BearerToken);
        assert!(dc.credentials("empty.example").is_none());
        assert!(dc.credentials("other.example").is_none());
        assert!(dc.credentials("bad.example").is_none());
        let d = dc.describe("bad.example");
        assert!(d.contains("not base64"), "{d}");
        let d = dc.describe("reg.example:5000");
        assert!(
            d.contains("user-two") && d.contains("config.json") && !d.contains("secret-pw-two"),
            "{d}"
        );
        assert!(dc.describe("other.example").starts_with("none (no entry"));
    }

    #[test]
    fn missing_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let dc = DockerConfig::from_file(dir.path().join("nope.json"));
        assert!(dc.credentials("x").is_none());
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"auths":{"x":{"auth":"dTpw"}}}"#).unwrap();
        let dc = DockerConfig::with_files(vec![bad.clone(), good]);
        assert_eq!(dc.credentials("x").unwrap().username, "u");
        assert!(DockerConfig::from_file(bad)
            .describe("x")
            .contains("not valid JSON"));
    }

    #[test]
    fn chain_prefers_explicit() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"auths":{"a":{"auth":"ZDpw"},"b":{"auth":"ZDpw"}}}"#,
        )
        .unwrap();
        let mut s = StaticCredentials::new();
        s.insert("a", Credentials::new("explicit", "pw"));
        let chain =
            ChainCredentials::new(vec![Arc::new(s)]).then(Arc::new(DockerConfig::from_file(&file)));
        assert_eq!(chain.credentials("a").unwrap().username, "explicit");
        assert_eq!(chain.credentials("b").unwrap().username, "d");
        assert!(chain.describe("a").contains("given explicitly"));
        assert!(chain.describe("b").contains("config.json"));
        assert!(chain.describe("c").starts_with("none"));
        assert!(chain.credentials("c").is_none());
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn helper_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(10);
        // Echoes the server it was asked about as the username.
        let ok = script(
            dir.path(),
            "ok",
            r#"[ "$1" = get ] || exit 3; read s; printf '{"ServerURL":"%s","Username":"%s","Secret":"pw"}' "$s" "$s""#,
        );
        let c = run_program(&ok, "ok", "reg.example:5000", t)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.secret.as_str()),
            ("reg.example:5000", "pw")
        );
        let tok = script(
            dir.path(),
            "tok",
            r#"printf '{"Username":"<token>","Secret":"refresh"}'"#,
        );
        let c = run_program(&tok, "tok", "x", t).unwrap().unwrap();
        assert_eq!(c.kind, crate::transport::auth::SecretKind::IdentityToken);
        let nf = script(
            dir.path(),
            "nf",
            "echo 'credentials not found in native keychain'; exit 1",
        );
        assert!(run_program(&nf, "nf", "x", t).unwrap().is_none());
        let fail = script(dir.path(), "fail", "echo 'dbus: no session' >&2; exit 2");
        let e = run_program(&fail, "fail", "x", t).unwrap_err();
        assert!(e.contains("dbus: no session"), "{e}");
        let junk = script(dir.path(), "junk", "echo hello");
        assert!(run_program(&junk, "junk", "x", t)
            .unwrap_err()
            .contains("no credentials JSON"));
        let slow = script(dir.path(), "slow", "exec sleep 20");
        let start = Instant::now();
        let e = run_program(&slow, "slow", "x", Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("did not answer"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn helper_names_are_checked() {
        assert!(run_helper("../evil", "x").unwrap_err().contains("invalid"));
        assert!(run_helper("no-such-helper-spack-oci-rs", "x")
            .unwrap_err()
            .contains("cannot run docker-credential-no-such-helper-spack-oci-rs"));
    }
}
