//! Registry authentication: `WWW-Authenticate` challenges (RFC 7235), credentials, HTTP Basic,
//! and the Docker/OAuth2 bearer-token flow with tokens cached per registry and scope.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// A username and secret for one registry. Debug and Display never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The value of an `Authorization: Basic …` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials(username={:?}, password=<redacted>)",
            self.username
        )
    }
}

/// Where credentials for a registry come from (Spack mirrors, docker config, …).
pub trait CredentialProvider: Send + Sync {
    /// Credentials for `registry` (`host[:port]`), if any.
    fn credentials(&self, registry: &str) -> Option<Credentials>;
    /// A short description of the source, for messages (never the secret).
    fn describe(&self, registry: &str) -> String {
        let _ = registry;
        "configured credentials".to_string()
    }
}

/// A fixed map from registry (`host[:port]`) to credentials.
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
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.map.keys()).finish()
    }
}

impl CredentialProvider for StaticCredentials {
    fn credentials(&self, registry: &str) -> Option<Credentials> {
        self.map.get(registry).cloned()
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
        let start_tok = i;
        let tok = read_token(&mut i);
        if tok.is_empty() {
            // Unparseable character: give up on the rest.
            break;
        }
        skip_ws(&mut i);
        if i < s.len() && s[i] == b'=' && !out.is_empty() && start_tok > 0 {
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
    expires: Option<Instant>,
}

/// Tokens are cached per registry host and set of scopes.
type TokenKey = (String, Vec<Scope>);

/// Token cache shared by all transfers of one client: per registry and scope set.
#[derive(Default)]
pub struct AuthCache {
    hosts: Mutex<HashMap<String, HostAuth>>,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    /// One async lock per (host, scopes) so concurrent requests fetch a token once.
    locks: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// Tokens without `expires_in` live 60 s (the token spec's default).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

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

    pub fn token(&self, host: &str, scopes: &[Scope]) -> Option<String> {
        let key = (host.to_string(), scopes.to_vec());
        let tokens = self.tokens.lock().expect("auth lock");
        let t = tokens.get(&key)?;
        match t.expires {
            // Refresh a little early so a token does not expire mid-request.
            Some(exp) if Instant::now() + Duration::from_secs(5) >= exp => None,
            _ => Some(t.header.clone()),
        }
    }

    pub fn store_token(&self, host: &str, scopes: &[Scope], header: String, lifetime: Duration) {
        let key = (host.to_string(), scopes.to_vec());
        self.tokens.lock().expect("auth lock").insert(
            key,
            CachedToken {
                header,
                expires: Some(Instant::now() + lifetime),
            },
        );
    }

    /// Forget a token the registry rejected, unless another task already replaced it.
    pub fn invalidate(&self, host: &str, scopes: &[Scope], header: &str) {
        let key = (host.to_string(), scopes.to_vec());
        let mut tokens = self.tokens.lock().expect("auth lock");
        if tokens.get(&key).is_some_and(|t| t.header == header) {
            tokens.remove(&key);
        }
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
    fn secrets_not_in_debug() {
        let c = Credentials::new("user", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic_header(), "Basic dXNlcjpodW50ZXIy");
    }

    #[test]
    fn token_cache_per_scope() {
        let cache = AuthCache::default();
        let pull = vec![Scope::pull("a")];
        let push = vec![Scope::push("a")];
        cache.store_token("h", &pull, "Bearer p".into(), Duration::from_secs(60));
        assert_eq!(cache.token("h", &pull).as_deref(), Some("Bearer p"));
        assert!(cache.token("h", &push).is_none());
        cache.store_token("h", &push, "Bearer q".into(), Duration::from_secs(1));
        assert!(
            cache.token("h", &push).is_none(),
            "expires within the safety margin"
        );
        cache.invalidate("h", &pull, "Bearer other");
        assert!(cache.token("h", &pull).is_some());
        cache.invalidate("h", &pull, "Bearer p");
        assert!(cache.token("h", &pull).is_none());
    }
}
