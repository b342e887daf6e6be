//! Registry authentication: `WWW-Authenticate` challenges (RFC 7235), credentials, HTTP Basic,
//! and the Docker/OAuth2 bearer-token flow with tokens cached per registry and scope.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::error::{Error, ErrorKind};

/// What kind of secret a [`Credentials`] holds, which decides how it is presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecretKind {
    /// A password, or a token used as one (Docker Hub, GHCR and GitLab personal access
    /// tokens, ECR's `get-login-password`): HTTP Basic to the registry or its token realm.
    Password,
    /// An OAuth2 refresh token (Docker's `identitytoken`, what `az acr login` stores):
    /// exchanged at the token realm with `grant_type=refresh_token`.
    IdentityToken,
    /// A bearer token for the registry itself (Spack's mirror `access_token`, Docker's
    /// `registrytoken`): sent as `Authorization: Bearer <token>` as it is, no exchange.
    BearerToken,
}

/// A username and secret for one registry. Debug never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
    pub kind: SecretKind,
}

impl Credentials {
    /// A username and password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            secret: password.into(),
            kind: SecretKind::Password,
        }
    }

    /// A bearer token sent to the registry as it is (`Authorization: Bearer <token>`).
    pub fn bearer_token(token: impl Into<String>) -> Self {
        Self {
            username: String::new(),
            secret: token.into(),
            kind: SecretKind::BearerToken,
        }
    }

    /// An OAuth2 refresh token (Docker's `identitytoken`) exchanged at the token realm.
    pub fn identity_token(username: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            secret: token.into(),
            kind: SecretKind::IdentityToken,
        }
    }

    /// The value of an `Authorization: Basic …` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// The value of an `Authorization: Bearer …` header (for [`SecretKind::BearerToken`]).
    pub fn bearer_header(&self) -> String {
        format!("Bearer {}", self.secret)
    }

    /// What the credentials are, for messages: `username "spack"`, `an access token`.
    pub fn what(&self) -> String {
        match self.kind {
            SecretKind::Password => format!("username {:?}", self.username),
            SecretKind::IdentityToken if self.username.is_empty() => {
                "an identity token".to_string()
            }
            SecretKind::IdentityToken => {
                format!("username {:?} with an identity token", self.username)
            }
            SecretKind::BearerToken => "an access token".to_string(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials(username={:?}, kind={:?}, secret=<redacted>)",
            self.username, self.kind
        )
    }
}

/// Where credentials for a registry come from (Spack mirrors, docker config, …).
///
/// Implementations may do blocking work in [`CredentialProvider::credentials`] (a Docker
/// credential helper runs a program); they cache their answers, since it is asked once per
/// request that needs credentials.
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    /// Credentials for `registry` (`host[:port]`), if any.
    fn credentials(&self, registry: &str) -> Option<Credentials>;
    /// Which source would be used for `registry` and what it holds (never the secret), or
    /// `None` when this provider has nothing for it.
    fn source(&self, registry: &str) -> Option<String> {
        self.credentials(registry)
            .map(|c| format!("{} from the configured credentials", c.what()))
    }
    /// A short description of where credentials for `registry` come from, for messages
    /// and `spack-oci-rs doctor` (never the secret).
    fn describe(&self, registry: &str) -> String {
        self.source(registry)
            .unwrap_or_else(|| "none (anonymous)".to_string())
    }
}

/// A fixed map from registry (`host[:port]`) to credentials: what the Spack adapter passes
/// (a mirror's `access_pair`, or its `access_token`).
#[derive(Clone, Default)]
pub struct StaticCredentials {
    map: HashMap<String, Credentials>,
}

impl StaticCredentials {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, registry: impl Into<String>, creds: Credentials) {
        self.map.insert(registry.into(), creds);
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The registries that have credentials, sorted.
    pub fn registries(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map.keys().cloned().collect();
        v.sort();
        v
    }
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.registries().into_iter().map(|r| {
                let what = self.map[&r].what();
                (r, what)
            }))
            .finish()
    }
}

impl CredentialProvider for StaticCredentials {
    fn credentials(&self, registry: &str) -> Option<Credentials> {
        self.map.get(registry).cloned()
    }

    fn source(&self, registry: &str) -> Option<String> {
        self.map.get(registry).map(|c| match c.kind {
            SecretKind::BearerToken => {
                "an access token given explicitly (a mirror's access_token)".to_string()
            }
            _ => format!("{} given explicitly (a mirror's access_pair)", c.what()),
        })
    }
}

/// One authentication challenge: scheme and parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Lower-cased scheme (`basic`, `bearer`).
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a `WWW-Authenticate` header into challenges (RFC 7235: several challenges, quoted
/// strings with escapes, auth-params separated by commas; token68 is accepted and ignored).
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let s = header.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t') {
            *i += 1;
        }
    };
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    let read_token = |i: &mut usize| {
        let start = *i;
        while *i < s.len() && is_tchar(s[*i]) {
            *i += 1;
        }
        String::from_utf8_lossy(&s[start..*i]).into_owned()
    };
    while i < s.len() {
        skip_ws(&mut i);
        while i < s.len() && s[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= s.len() {
            break;
        }
        let tok = read_token(&mut i);
        if tok.is_empty() {
            // Unparseable character: give up on the rest.
            break;
        }
        skip_ws(&mut i);
        if i < s.len() && s[i] == b'=' && !out.is_empty() {
            // An auth-param of the current challenge.
            i += 1;
            skip_ws(&mut i);
            let value = if i < s.len() && s[i] == b'"' {
                i += 1;
                let mut v = Vec::new();
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    v.push(s[i]);
                    i += 1;
                }
                i += 1; // closing quote
                String::from_utf8_lossy(&v).into_owned()
            } else {
                read_token(&mut i)
            };
            if let Some(ch) = out.last_mut() {
                ch.params.push((tok.to_ascii_lowercase(), value));
            }
        } else {
            // A new challenge: `scheme [param, …]`.
            out.push(Challenge {
                scheme: tok.to_ascii_lowercase(),
                params: Vec::new(),
            });
            // A token68 (`Negotiate abc==`) or the first auth-param?
            let save = i;
            let t68 = read_token(&mut i);
            let mut j = i;
            skip_ws(&mut j);
            let is_param = !t68.is_empty() && j < s.len() && s[j] == b'=' && {
                let mut k = j + 1;
                skip_ws(&mut k);
                k < s.len() && s[k] != b'=' && s[k] != b','
            };
            if is_param || t68.is_empty() {
                i = save;
            } else {
                while i < s.len() && s[i] == b'=' {
                    i += 1;
                }
            }
        }
    }
    out
}

/// The scope of a registry request, as the token server understands it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub repository: String,
    pub push: bool,
}

impl Scope {
    pub fn pull(repository: &str) -> Self {
        Self {
            repository: repository.to_string(),
            push: false,
        }
    }

    pub fn push(repository: &str) -> Self {
        Self {
            repository: repository.to_string(),
            push: true,
        }
    }

    /// `repository:<name>:pull` or `repository:<name>:pull,push`.
    pub fn as_param(&self) -> String {
        if self.push {
            format!("repository:{}:pull,push", self.repository)
        } else {
            format!("repository:{}:pull", self.repository)
        }
    }

    /// Whether a token for `self` also allows `other` (pull+push covers pull).
    pub fn covers(&self, other: &Scope) -> bool {
        self.repository == other.repository && (self.push || !other.push)
    }

    /// For messages: ``pull access to `org/cache` ``, ``push access to `org/cache` ``.
    pub fn describe(&self) -> String {
        format!(
            "{} access to `{}`",
            if self.push { "push" } else { "pull" },
            self.repository
        )
    }
}

fn describe_scopes(scopes: &[Scope]) -> String {
    if scopes.is_empty() {
        "access".to_string()
    } else {
        scopes
            .iter()
            .map(Scope::describe)
            .collect::<Vec<_>>()
            .join(" and ")
    }
}

/// How a registry wants to be authenticated, learnt from its first challenge.
#[derive(Clone, Debug)]
pub enum HostAuth {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Clone)]
struct CachedToken {
    header: String,
    /// When to stop using it: a little before it expires, so that it does not expire
    /// in the middle of a request.
    refresh_at: Instant,
}

/// Tokens are cached per registry host and set of scopes.
type TokenKey = (String, Vec<Scope>);

/// Token cache shared by all transfers of one client: per registry and scope set.
///
/// A token fetched for more scopes serves requests that need fewer (a `pull,push` token of a
/// repository serves its pulls). Concurrent requests that need a token for the same scopes
/// wait on one async lock per key, so that one of them fetches it and the others reuse it.
#[derive(Default)]
pub struct AuthCache {
    hosts: Mutex<HashMap<String, HostAuth>>,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    /// One async lock per (host, scopes) so concurrent requests fetch a token once.
    locks: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// Tokens without `expires_in` live 60 s (the token spec's default).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A token is refreshed this long before it expires (or a quarter of its lifetime before,
/// if that is shorter).
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5);

impl AuthCache {
    pub fn host_auth(&self, host: &str) -> Option<HostAuth> {
        self.hosts.lock().expect("auth lock").get(host).cloned()
    }

    pub fn set_host_auth(&self, host: &str, auth: HostAuth) {
        self.hosts
            .lock()
            .expect("auth lock")
            .insert(host.to_string(), auth);
    }

    /// A cached, unexpired token header for `scopes` on `host`: one fetched for exactly
    /// these scopes, else one whose scopes cover them.
    pub fn token(&self, host: &str, scopes: &[Scope]) -> Option<String> {
        let key = (host.to_string(), scopes.to_vec());
        let tokens = self.tokens.lock().expect("auth lock");
        let now = Instant::now();
        if let Some(t) = tokens.get(&key).filter(|t| t.refresh_at > now) {
            return Some(t.header.clone());
        }
        tokens
            .iter()
            .filter(|((h, have), t)| {
                h == host
                    && t.refresh_at > now
                    && scopes
                        .iter()
                        .all(|want| have.iter().any(|s| s.covers(want)))
            })
            .map(|(_, t)| t.header.clone())
            .next()
    }

    pub fn store_token(&self, host: &str, scopes: &[Scope], header: String, lifetime: Duration) {
        let key = (host.to_string(), scopes.to_vec());
        let margin = TOKEN_REFRESH_MARGIN.min(lifetime / 4);
        self.tokens.lock().expect("auth lock").insert(
            key,
            CachedToken {
                header,
                refresh_at: Instant::now() + lifetime.saturating_sub(margin),
            },
        );
    }

    /// Forget a token the registry rejected (under whichever scopes it is cached), unless
    /// another task already replaced it.
    pub fn invalidate(&self, host: &str, scopes: &[Scope], header: &str) {
        let _ = scopes;
        self.tokens
            .lock()
            .expect("auth lock")
            .retain(|(h, _), t| !(h == host && t.header == header));
    }

    pub fn lock_for(&self, host: &str, scopes: &[Scope]) -> Arc<tokio::sync::Mutex<()>> {
        let key = (host.to_string(), scopes.to_vec());
        self.locks
            .lock()
            .expect("auth lock")
            .entry(key)
            .or_default()
            .clone()
    }
}

// ---------------------------------------------------------------------------------------
// The token request and its answer
// ---------------------------------------------------------------------------------------

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The realm URL of a bearer challenge, checked: credentials only go to an `https` realm,
/// except for a plain-HTTP registry (`oci+http://`) whose realm is on loopback.
pub fn checked_realm(
    realm: &str,
    registry_is_http: bool,
    what: &str,
    host: &str,
) -> crate::Result<url::Url> {
    let url = url::Url::parse(realm).map_err(|e| {
        Error::new(
            ErrorKind::Authentication,
            format!("{what}: invalid token realm {realm:?} from {host}: {e}"),
        )
    })?;
    let allowed = url.scheme() == "https"
        || (url.scheme() == "http" && registry_is_http && is_loopback_host(&url));
    if !allowed {
        return Err(Error::new(
            ErrorKind::Authentication,
            format!(
                "{what}: refusing to log in to {host} over insecure realm {realm} (token \
                 realms must be https, except on loopback for an oci+http:// registry)"
            ),
        ));
    }
    Ok(url)
}

/// The query of a token request (Docker token spec): `service`, one `scope` per scope,
/// `client_id=spack`.
pub fn token_query(service: Option<&str>, scopes: &[Scope]) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(s) = service {
        q.push(("service", s.to_string()));
    }
    for scope in scopes {
        q.push(("scope", scope.as_param()));
    }
    q.push(("client_id", "spack".to_string()));
    q
}

/// The form of an OAuth2 refresh-token request (what Docker does with an `identitytoken`):
/// scopes space-separated in one `scope` field.
pub fn oauth2_refresh_form(service: Option<&str>, scopes: &[Scope], refresh_token: &str) -> String {
    let mut f = url::form_urlencoded::Serializer::new(String::new());
    f.append_pair("grant_type", "refresh_token");
    f.append_pair("refresh_token", refresh_token);
    if let Some(s) = service {
        f.append_pair("service", s);
    }
    if !scopes.is_empty() {
        let scope: Vec<String> = scopes.iter().map(Scope::as_param).collect();
        f.append_pair("scope", &scope.join(" "));
    }
    f.append_pair("client_id", "spack");
    f.finish()
}

/// Parse a token server's answer: `token` or `access_token` (OAuth2), `expires_in`.
/// Returns the `Authorization` header value and the token's lifetime.
pub fn parse_token_response(body: &[u8], what: &str) -> crate::Result<(String, Duration)> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::invalid_response(format!("{what}: token response is not JSON: {e}")))?;
    let token = ["token", "access_token"]
        .iter()
        .filter_map(|k| json.get(k).and_then(serde_json::Value::as_str))
        .find(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Authentication,
                format!("{what}: token response has no `token` or `access_token`"),
            )
        })?;
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(Error::invalid_response(format!(
            "{what}: token response holds a token with invalid characters"
        )));
    }
    let lifetime = json
        .get("expires_in")
        .and_then(serde_json::Value::as_f64)
        .filter(|s| s.is_finite() && *s >= 1.0)
        .map_or(DEFAULT_TOKEN_LIFETIME, |s| {
            Duration::from_secs_f64(s.min(86_400.0 * 365.0))
        });
    Ok((format!("Bearer {token}"), lifetime))
}

// ---------------------------------------------------------------------------------------
// Login errors
// ---------------------------------------------------------------------------------------

/// Why a login failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginFailure {
    /// The registry wants credentials and we sent none.
    Required,
    /// The registry (or its token server, with this status) rejected what we sent.
    Rejected(u16),
}

/// The bearer challenge's `error` parameter (`insufficient_scope`, `invalid_token`), if any.
pub fn challenge_error(challenges: &[Challenge]) -> Option<&str> {
    challenges
        .iter()
        .find(|c| c.scheme == "bearer")
        .and_then(|c| c.param("error"))
}

const SET_CREDENTIALS: &str =
    "`spack mirror set --oci-username-variable VAR --oci-password-variable VAR <mirror>`";

/// The error for a failed login: names the registry, the repositories and access asked
/// for, where the credentials came from and what to configure; never the secret.
pub fn login_error(
    what: &str,
    host: &str,
    scopes: &[Scope],
    creds: Option<(&Credentials, String)>,
    challenges: &[Challenge],
    failure: LoginFailure,
) -> Error {
    let access = describe_scopes(scopes);
    let denied = challenge_error(challenges) == Some("insufficient_scope");
    let status = match failure {
        LoginFailure::Required => 401,
        LoginFailure::Rejected(s) => s,
    };
    let message = match creds {
        None => format!(
            "{what}: {host} requires credentials for {access}, and none are configured for \
             it; set them with {SET_CREDENTIALS} (or log in with `docker login {host}` and \
             enable the client's docker_config)"
        ),
        Some((_, source)) if denied => format!(
            "{what}: {host} denied {access} to {source} (scope denied): the account lacks \
             that permission; grant it on the registry, or configure credentials that have \
             it with {SET_CREDENTIALS}"
        ),
        Some((c, source)) if c.kind == SecretKind::BearerToken => format!(
            "{what}: {host} rejected {source} for {access}; check that the token is valid, \
             unexpired and grants that access. Registries that take a token as a password \
             (Docker Hub, GHCR, GitLab, Quay) need it as the mirror's password: `spack mirror \
             set --oci-username USER --oci-password-variable VAR <mirror>`"
        ),
        Some((_, source)) => format!(
            "{what}: {host} rejected {source} for {access}: wrong username or password (or \
             an expired token)? Check them, or set them with {SET_CREDENTIALS}"
        ),
    };
    Error::http(ErrorKind::Authentication, message, status, Vec::new())
}

// ---------------------------------------------------------------------------------------
// Redirects
// ---------------------------------------------------------------------------------------

/// Redirects followed per request.
pub const MAX_REDIRECTS: usize = 10;

/// The redirect policy: follow up to [`MAX_REDIRECTS`] redirects (relative or absolute
/// `Location`), never from https down to plain http. reqwest drops `Authorization` (and
/// cookies) whenever a redirect leaves the host, port or scheme, so registry credentials
/// and tokens never reach blob storage or a CDN; a 303 keeps HEAD a HEAD, 307/308 keep the
/// method.
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            let msg = format!("more than {MAX_REDIRECTS} redirects");
            attempt.error(msg)
        } else if attempt.url().scheme() != "https"
            && attempt.previous().iter().any(|u| u.scheme() == "https")
        {
            let msg = format!(
                "refusing to follow a redirect from https to {}://{}",
                attempt.url().scheme(),
                attempt.url().host_str().unwrap_or("?")
            );
            attempt.error(msg)
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/ubuntu:pull"));
    }

    #[test]
    fn several_challenges_and_escapes() {
        let c = parse_www_authenticate(
            r#"Basic realm="a \"quoted\" realm", Bearer realm="https://x/token", service=reg,  scope="a,b""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"a "quoted" realm"#));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("service"), Some("reg"));
        assert_eq!(c[1].param("scope"), Some("a,b"));
    }

    #[test]
    fn token68_and_bare() {
        let c = parse_www_authenticate("Negotiate abc123==, Basic");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "negotiate");
        assert_eq!(c[1].scheme, "basic");
    }

    #[test]
    fn challenge_variants() {
        // Case-insensitive scheme and parameter names, spaces around `=`, empty and
        // quoted values with commas and spaces, trailing and doubled commas.
        let c = parse_www_authenticate(
            r#"BEARER Realm = "https://r/token" , SERVICE=svc,, scope="repository:a:pull repository:b:pull,push", error="insufficient_scope",  "#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://r/token"));
        assert_eq!(c[0].param("service"), Some("svc"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:a:pull repository:b:pull,push")
        );
        assert_eq!(challenge_error(&c), Some("insufficient_scope"));

        let c = parse_www_authenticate(r#"Basic realm="", charset="UTF-8""#);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("realm"), Some(""));
        assert_eq!(c[0].param("charset"), Some("UTF-8"));

        // distribution's htpasswd challenge, and a Bearer without parameters.
        let c = parse_www_authenticate(r#"Basic realm="spack-oci-rs-test""#);
        assert_eq!((c[0].scheme.as_str(), c[0].params.len()), ("basic", 1));
        let c = parse_www_authenticate("Bearer");
        assert_eq!((c[0].scheme.as_str(), c[0].params.len()), ("bearer", 0));
        assert!(parse_www_authenticate("").is_empty());
        // An unterminated quoted string does not panic.
        let c = parse_www_authenticate(r#"Bearer realm="https://x"#);
        assert_eq!(c[0].param("realm"), Some("https://x"));
    }

    #[test]
    fn secrets_not_in_debug() {
        let c = Credentials::new("user", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic_header(), "Basic dXNlcjpodW50ZXIy");
        let t = Credentials::bearer_token("tok-secret");
        assert_eq!(t.bearer_header(), "Bearer tok-secret");
        assert!(!format!("{t:?}").contains("tok-secret"));
        let mut s = StaticCredentials::new();
        s.insert("r.example", c);
        s.insert("t.example", t);
        let dbg = format!("{s:?}");
        assert!(
            dbg.contains("r.example") && dbg.contains("t.example"),
            "{dbg}"
        );
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("tok-secret"),
            "{dbg}"
        );
        assert!(s.describe("r.example").contains("username \"user\""));
        assert!(s.describe("t.example").contains("access token"));
        assert_eq!(s.describe("other"), "none (anonymous)");
    }

    #[test]
    fn token_cache_per_scope() {
        let cache = AuthCache::default();
        let pull = vec![Scope::pull("a")];
        let push = vec![Scope::push("a")];
        cache.store_token("h", &pull, "Bearer p".into(), Duration::from_secs(60));
        assert_eq!(cache.token("h", &pull).as_deref(), Some("Bearer p"));
        assert!(
            cache.token("h", &push).is_none(),
            "pull does not cover push"
        );
        assert!(cache.token("other", &pull).is_none(), "per registry");
        assert!(
            cache.token("h", &[Scope::pull("b")]).is_none(),
            "per repository"
        );
        cache.invalidate("h", &pull, "Bearer other");
        assert!(
            cache.token("h", &pull).is_some(),
            "another token was rejected"
        );
        cache.invalidate("h", &pull, "Bearer p");
        assert!(cache.token("h", &pull).is_none());
    }

    #[test]
    fn push_token_serves_pull_and_mount_needs_both() {
        let cache = AuthCache::default();
        let push = vec![Scope::push("a")];
        cache.store_token("h", &push, "Bearer q".into(), Duration::from_secs(60));
        assert_eq!(
            cache.token("h", &[Scope::pull("a")]).as_deref(),
            Some("Bearer q")
        );
        // A mount into `a` from `b` needs push on a and pull on b: not covered.
        let mount = vec![Scope::push("a"), Scope::pull("b")];
        assert!(cache.token("h", &mount).is_none());
        cache.store_token("h", &mount, "Bearer m".into(), Duration::from_secs(60));
        assert_eq!(cache.token("h", &mount).as_deref(), Some("Bearer m"));
        assert!(cache.token("h", &[Scope::pull("b")]).is_some());
        // A rejected token goes under every key that holds it.
        cache.invalidate("h", &[Scope::pull("a")], "Bearer q");
        assert_eq!(cache.token("h", &push).as_deref(), Some("Bearer m"));
        cache.invalidate("h", &push, "Bearer m");
        assert!(cache.token("h", &push).is_none());
    }

    #[test]
    fn token_lifetime_and_refresh_margin() {
        let cache = AuthCache::default();
        let s = vec![Scope::pull("a")];
        // 60 s: refreshed 5 s early; 1 s: a quarter early, so still usable now.
        cache.store_token("h", &s, "Bearer a".into(), Duration::from_secs(1));
        assert!(cache.token("h", &s).is_some());
        std::thread::sleep(Duration::from_millis(800));
        assert!(cache.token("h", &s).is_none(), "expired (minus margin)");
    }

    #[test]
    fn token_responses() {
        let (h, life) = parse_token_response(br#"{"token":"abc","expires_in":300}"#, "w").unwrap();
        assert_eq!((h.as_str(), life), ("Bearer abc", Duration::from_secs(300)));
        // OAuth2 form (ACR): access_token, plus a refresh_token we do not need.
        let (h, life) = parse_token_response(
            br#"{"access_token":"xyz","refresh_token":"r","expires_in":3600,"scope":"s"}"#,
            "w",
        )
        .unwrap();
        assert_eq!(
            (h.as_str(), life),
            ("Bearer xyz", Duration::from_secs(3600))
        );
        // Both (Docker Hub sends both): token first; an empty token falls back.
        let (h, _) = parse_token_response(br#"{"token":"","access_token":"b"}"#, "w").unwrap();
        assert_eq!(h, "Bearer b");
        let (_, life) = parse_token_response(br#"{"token":"t"}"#, "w").unwrap();
        assert_eq!(life, DEFAULT_TOKEN_LIFETIME);
        let (_, life) = parse_token_response(br#"{"token":"t","expires_in":0}"#, "w").unwrap();
        assert_eq!(life, DEFAULT_TOKEN_LIFETIME);
        let e = parse_token_response(br#"{"details":"x"}"#, "getting x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Authentication);
        assert!(e.to_string().contains("getting x"), "{e}");
        assert!(parse_token_response(b"<html>", "w").is_err());
        assert!(parse_token_response(br#"{"token":"a\nb"}"#, "w").is_err());
    }

    #[test]
    fn realm_checks() {
        let ok = |r: &str, http: bool| checked_realm(r, http, "w", "h").is_ok();
        assert!(ok("https://auth.example/token", false));
        assert!(ok("https://auth.example/token", true));
        assert!(!ok("http://auth.example/token", false));
        assert!(
            !ok("http://auth.example/token", true),
            "http realm off loopback"
        );
        assert!(
            !ok("http://127.0.0.1:5001/token", false),
            "https registry, http realm"
        );
        assert!(ok("http://127.0.0.1:5001/token", true));
        assert!(ok("http://localhost:5001/token", true));
        assert!(ok("http://[::1]:5001/token", true));
        assert!(!ok("ftp://127.0.0.1/token", true));
        assert!(!ok("not a url", false));
        let e = checked_realm("http://auth.example/t", false, "pulling x", "reg:5000").unwrap_err();
        assert!(e.to_string().contains("insecure realm"), "{e}");
        assert!(e.to_string().contains("reg:5000"), "{e}");
    }

    #[test]
    fn token_query_and_refresh_form() {
        let scopes = vec![Scope::push("a/b"), Scope::pull("c")];
        let q = token_query(Some("reg"), &scopes);
        assert_eq!(
            q,
            vec![
                ("service", "reg".to_string()),
                ("scope", "repository:a/b:pull,push".to_string()),
                ("scope", "repository:c:pull".to_string()),
                ("client_id", "spack".to_string()),
            ]
        );
        let f = oauth2_refresh_form(Some("reg"), &scopes, "r t");
        assert_eq!(
            f,
            "grant_type=refresh_token&refresh_token=r+t&service=reg&scope=repository%3Aa%2Fb%3Apull%2Cpush+repository%3Ac%3Apull&client_id=spack"
        );
    }

    #[test]
    fn login_errors_name_things_but_not_secrets() {
        let scopes = vec![Scope::push("org/cache")];
        let c = Credentials::new("bob", "s3cret-pw");
        let src = || Some((&c, "username \"bob\" given explicitly".to_string()));
        let e = login_error(
            "pushing x",
            "reg:5000",
            &scopes,
            None,
            &[],
            LoginFailure::Required,
        );
        let m = e.to_string();
        assert!(
            m.contains("reg:5000") && m.contains("push access to `org/cache`"),
            "{m}"
        );
        assert!(m.contains("--oci-username-variable"), "{m}");
        assert_eq!(e.kind(), ErrorKind::Authentication);
        let e = login_error(
            "pushing x",
            "reg:5000",
            &scopes,
            src(),
            &[],
            LoginFailure::Rejected(401),
        );
        let m = e.to_string();
        assert!(
            m.contains("rejected") && m.contains("bob") && !m.contains("s3cret"),
            "{m}"
        );
        let denied = parse_www_authenticate(
            r#"Bearer realm="https://r",service="s",scope="repository:org/cache:pull,push",error="insufficient_scope""#,
        );
        let m = login_error(
            "pushing x",
            "reg:5000",
            &scopes,
            src(),
            &denied,
            LoginFailure::Rejected(401),
        )
        .to_string();
        assert!(m.contains("scope denied") && m.contains("org/cache"), "{m}");
        let t = Credentials::bearer_token("tok-secret");
        let m = login_error(
            "pulling x",
            "reg:5000",
            &scopes,
            Some((&t, "an access token".to_string())),
            &[],
            LoginFailure::Rejected(401),
        )
        .to_string();
        assert!(
            m.contains("access token") && !m.contains("tok-secret"),
            "{m}"
        );
    }
}
