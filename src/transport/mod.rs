//! The HTTP layer: one reqwest client (rustls, HTTP/1.1 keep-alive and HTTP/2), a per-registry
//! concurrency limit, authentication (anonymous, Basic, bearer tokens cached per scope) and
//! retries with backoff. Registry operations (`crate::registry`) build on [`Client::send`].

pub mod auth;
pub mod credentials;
pub mod retry;
pub mod tls;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, ErrorKind, RegistryCode, Result};
use crate::reference::Scheme;
use auth::{
    AuthCache, Challenge, CredentialProvider, HostAuth, LoginFailure, Scope, SecretKind,
    StaticCredentials,
};
use retry::{is_retryable_status, parse_retry_after, Retrier, RetryPolicy};

/// Spack's default `config:connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the next bytes of a response before the request counts as stalled.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests in flight per registry host.
pub const DEFAULT_MAX_CONCURRENCY_PER_REGISTRY: usize = 32;
/// Error bodies are read up to this size (go-containerregistry uses the same cap).
pub const MAX_ERROR_BODY: usize = 64 * 1024;
/// Token responses larger than this are refused.
pub const MAX_TOKEN_BODY: usize = 1024 * 1024;

/// Everything that configures a [`Client`]; defaults in one place.
#[derive(Clone)]
pub struct ClientOptions {
    /// Extra CA certificates (PEM files, or directories of them), trusted besides the system
    /// roots (Spack's `config:ssl_certs`).
    pub ca_certs: Vec<PathBuf>,
    /// `false` disables TLS verification (Spack's `config:verify_ssl: false`).
    pub verify_tls: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub retry: RetryPolicy,
    pub max_concurrency_per_registry: usize,
    pub user_agent: String,
    pub credentials: Arc<dyn CredentialProvider>,
    /// Client certificate (PEM) for registries that require mutual TLS; with
    /// `client_key`, or holding the key itself.
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) of `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl std::fmt::Debug for ClientOptions {
    /// Names registries and files, never a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("ca_certs", &self.ca_certs)
            .field("verify_tls", &self.verify_tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("retry", &self.retry)
            .field(
                "max_concurrency_per_registry",
                &self.max_concurrency_per_registry,
            )
            .field("user_agent", &self.user_agent)
            .field("credentials", &self.credentials)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .finish()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            ca_certs: Vec::new(),
            verify_tls: true,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            retry: RetryPolicy::default(),
            max_concurrency_per_registry: DEFAULT_MAX_CONCURRENCY_PER_REGISTRY,
            user_agent: format!("spack-oci-rs/{}", env!("CARGO_PKG_VERSION")),
            credentials: Arc::new(StaticCredentials::new()),
            client_cert: None,
            client_key: None,
        }
    }
}

/// A request body that can be sent again on retry.
#[derive(Clone, Debug)]
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// A whole file, reopened for every attempt.
    File {
        path: PathBuf,
        len: u64,
    },
}

/// One request to a registry.
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Body,
    /// Registry host (`host[:port]`) the request is for: selects credentials and tokens.
    pub host: String,
    pub scheme: Scheme,
    /// What the token must allow.
    pub scopes: Vec<Scope>,
    /// For messages: "fetching manifest 127.0.0.1:5000/repo:tag".
    pub what: String,
}

impl Request {
    pub fn new(method: Method, url: impl Into<String>, what: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: HeaderMap::new(),
            body: Body::Empty,
            host: String::new(),
            scheme: Scheme::Https,
            scopes: Vec::new(),
            what: what.into(),
        }
    }

    #[must_use]
    pub fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    #[must_use]
    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
}

/// A response, holding its registry's concurrency permit until dropped.
pub struct Response {
    pub inner: reqwest::Response,
    _permit: OwnedSemaphorePermit,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// Read the whole body, refusing more than `limit` bytes.
    pub async fn bytes_limited(mut self, limit: usize, what: &str) -> Result<Bytes> {
        if let Some(len) = self.inner.content_length() {
            if len > limit as u64 {
                return Err(Error::invalid_response(format!(
                    "{what}: response of {len} bytes exceeds the limit of {limit} bytes"
                )));
            }
        }
        let mut buf = Vec::new();
        while let Some(chunk) = self
            .inner
            .chunk()
            .await
            .map_err(|e| transport_error(what, &e))?
        {
            if buf.len() + chunk.len() > limit {
                return Err(Error::invalid_response(format!(
                    "{what}: response exceeds the limit of {limit} bytes"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.into())
    }
}

/// A cloneable handle to one connection pool, token cache and set of limits.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    opts: ClientOptions,
    auth: AuthCache,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
}

fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another library may have installed one already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Self> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(opts.user_agent.clone())
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.read_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_adaptive_window(true)
            .redirect(auth::redirect_policy())
            .tls_backend_rustls();
        builder = tls::configure(builder, &opts)?;
        let http = builder
            .build()
            .map_err(|e| Error::invalid_input(format!("cannot create HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                opts,
                auth: AuthCache::default(),
                limits: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// The underlying reqwest client, for requests outside a registry (token realms).
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    fn semaphore(&self, host: &str) -> Arc<Semaphore> {
        let mut limits = self.inner.limits.lock().expect("limits lock");
        limits
            .entry(host.to_string())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    self.inner.opts.max_concurrency_per_registry.max(1),
                ))
            })
            .clone()
    }

    /// Send a request with authentication and retries. Returns the response for any status
    /// the caller must judge (2xx, 3xx, and 4xx other than 401); retryable failures are
    /// retried and, when attempts run out, returned as errors.
    pub async fn send(&self, req: &Request) -> Result<Response> {
        self.send_with(req, &mut self.retrier()).await
    }

    /// [`Client::send`] as part of a larger operation whose retries `retrier` counts.
    pub(crate) async fn send_with(&self, req: &Request, retrier: &mut Retrier) -> Result<Response> {
        loop {
            let err = match self.send_authenticated(req).await {
                Ok(resp) if is_retryable_status(resp.status().as_u16()) => {
                    error_from_response(resp, &req.what).await
                }
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            retrier.wait(err, &req.what).await?;
        }
    }

    /// A fresh retry state for one operation, with this client's policy.
    pub fn retrier(&self) -> Retrier {
        Retrier::new(&self.inner.opts.retry)
    }

    /// One attempt, plus at most one re-authentication after a 401.
    async fn send_authenticated(&self, req: &Request) -> Result<Response> {
        let header = self.auth_header(req).await?;
        let resp = self.send_once(req, header.as_deref()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenges = challenges_of(&resp.inner);
        drop(resp);
        if self.has_static_token(&req.host) {
            // A token given as it is: there is nothing to refresh.
            return Err(self.login_error(req, &challenges, LoginFailure::Rejected(401)));
        }
        self.learn_challenge(req, &challenges)?;
        if let Some(h) = &header {
            self.inner.auth.invalidate(&req.host, &req.scopes, h);
        }
        let header2 = self.auth_header(req).await?;
        if header2.is_none() {
            return Err(self.login_error(req, &challenges, LoginFailure::Required));
        }
        let resp = self.send_once(req, header2.as_deref()).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenges = challenges_of(&resp.inner);
            return Err(self.login_error(req, &challenges, LoginFailure::Rejected(401)));
        }
        Ok(resp)
    }

    fn has_static_token(&self, host: &str) -> bool {
        self.inner
            .opts
            .credentials
            .credentials(host)
            .is_some_and(|c| c.kind == SecretKind::BearerToken)
    }

    /// The error for a failed login (see [`auth::login_error`]).
    fn login_error(&self, req: &Request, challenges: &[Challenge], failure: LoginFailure) -> Error {
        let provider = &self.inner.opts.credentials;
        let creds = provider.credentials(&req.host);
        let source = creds.as_ref().map(|c| (c, provider.describe(&req.host)));
        auth::login_error(
            &req.what,
            &req.host,
            &req.scopes,
            source,
            challenges,
            failure,
        )
    }

    fn learn_challenge(&self, req: &Request, challenges: &[Challenge]) -> Result<()> {
        if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = b.param("realm").ok_or_else(|| {
                Error::new(
                    ErrorKind::Authentication,
                    format!(
                        "{}: bearer challenge from {} has no realm",
                        req.what, req.host
                    ),
                )
            })?;
            self.inner.auth.set_host_auth(
                &req.host,
                HostAuth::Bearer {
                    realm: realm.to_string(),
                    service: b.param("service").map(str::to_string),
                },
            );
            Ok(())
        } else if challenges.iter().any(|c| c.scheme == "basic") {
            self.inner.auth.set_host_auth(&req.host, HostAuth::Basic);
            Ok(())
        } else {
            let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
            Err(Error::http(
                ErrorKind::Authentication,
                format!(
                    "{}: {} asks for an authentication method we cannot use ({})",
                    req.what,
                    req.host,
                    if schemes.is_empty() {
                        "none given".to_string()
                    } else {
                        schemes.join(", ")
                    }
                ),
                401,
                Vec::new(),
            ))
        }
    }

    /// The `Authorization` header for a request: a static bearer token as it is; Basic when
    /// the registry asks for Basic; else, when the registry is known to use bearer tokens, a
    /// cached token for these scopes, fetched (once for all concurrent requests) if none is.
    async fn auth_header(&self, req: &Request) -> Result<Option<String>> {
        let creds = self.inner.opts.credentials.credentials(&req.host);
        if let Some(c) = creds.as_ref().filter(|c| c.kind == SecretKind::BearerToken) {
            return Ok(Some(c.bearer_header()));
        }
        match self.inner.auth.host_auth(&req.host) {
            None => Ok(None),
            Some(HostAuth::Basic) => Ok(creds
                .filter(|c| c.kind == SecretKind::Password)
                .map(|c| c.basic_header())),
            Some(HostAuth::Bearer { realm, service }) => {
                if let Some(t) = self.inner.auth.token(&req.host, &req.scopes) {
                    return Ok(Some(t));
                }
                let lock = self.inner.auth.lock_for(&req.host, &req.scopes);
                let _guard = lock.lock().await;
                // Another task may have fetched it while we waited.
                if let Some(t) = self.inner.auth.token(&req.host, &req.scopes) {
                    return Ok(Some(t));
                }
                let (header, lifetime) = self
                    .fetch_token(req, &realm, service.as_deref(), creds.as_ref())
                    .await?;
                self.inner
                    .auth
                    .store_token(&req.host, &req.scopes, header.clone(), lifetime);
                Ok(Some(header))
            }
        }
    }

    /// Get a token from the realm: GET with `service`, the scopes and `client_id` (Basic
    /// credentials when we have a password), or an OAuth2 POST with an identity token.
    async fn fetch_token(
        &self,
        req: &Request,
        realm: &str,
        service: Option<&str>,
        creds: Option<&auth::Credentials>,
    ) -> Result<(String, Duration)> {
        let mut url = auth::checked_realm(realm, req.scheme == Scheme::Http, &req.what, &req.host)?;
        let origin = url.origin().ascii_serialization();
        let what = format!(
            "{}: requesting a token for {} from {origin}",
            req.what, req.host
        );
        let rb = match creds {
            Some(c) if c.kind == SecretKind::IdentityToken => self
                .inner
                .http
                .post(url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(auth::oauth2_refresh_form(service, &req.scopes, &c.secret)),
            _ => {
                url.query_pairs_mut()
                    .extend_pairs(auth::token_query(service, &req.scopes));
                let rb = self.inner.http.get(url);
                match creds {
                    Some(c) if c.kind == SecretKind::Password => {
                        rb.header(AUTHORIZATION, c.basic_header())
                    }
                    _ => rb,
                }
            }
        };
        let resp = rb.send().await.map_err(|e| {
            let err = transport_error(&what, &e);
            Error::new(
                ErrorKind::Transport,
                format!(
                    "{err} ({} sends clients to this token server to log in: check that it \
                     is reachable, and the https_proxy/no_proxy settings)",
                    req.host
                ),
            )
            .with_retryable(err.is_retryable())
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let challenges = challenges_of(&resp);
            drop(resp);
            let what = format!("{} (token server {origin})", req.what);
            let provider = &self.inner.opts.credentials;
            let source = creds.map(|c| (c, provider.describe(&req.host)));
            return Err(auth::login_error(
                &what,
                &req.host,
                &req.scopes,
                source,
                &challenges,
                LoginFailure::Rejected(status.as_u16()),
            ));
        }
        if !status.is_success() {
            return Err(Error::http(
                ErrorKind::Registry,
                format!("{what}: the token server answered {status}"),
                status.as_u16(),
                Vec::new(),
            )
            .with_retryable(is_retryable_status(status.as_u16())));
        }
        let body = read_limited(resp, MAX_TOKEN_BODY, &what).await?;
        auth::parse_token_response(&body, &what)
    }

    /// One attempt (with re-authentication), no retries: for requests that must not be
    /// repeated as they are, such as the PUT closing an upload session.
    pub(crate) async fn send_no_retry(&self, req: &Request) -> Result<Response> {
        self.send_authenticated(req).await
    }

    /// One attempt with a streaming body that cannot be replayed. The token for the
    /// request's scopes must already be known (an earlier request of the same upload got it).
    pub(crate) async fn send_stream(&self, req: &Request, body: reqwest::Body) -> Result<Response> {
        let header = self.auth_header(req).await?;
        let resp = self
            .send_once_with(req, header.as_deref(), Some(body))
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenges = challenges_of(&resp.inner);
            return Err(self.login_error(req, &challenges, LoginFailure::Rejected(401)));
        }
        Ok(resp)
    }

    async fn send_once(&self, req: &Request, auth: Option<&str>) -> Result<Response> {
        self.send_once_with(req, auth, None).await
    }

    async fn send_once_with(
        &self,
        req: &Request,
        auth: Option<&str>,
        stream: Option<reqwest::Body>,
    ) -> Result<Response> {
        let permit = self
            .semaphore(&req.host)
            .acquire_owned()
            .await
            .map_err(|_| Error::cancelled())?;
        let mut rb = self
            .inner
            .http
            .request(req.method.clone(), &req.url)
            .headers(req.headers.clone());
        if let Some(a) = auth {
            rb = rb.header(AUTHORIZATION, a);
        }
        rb = match (&req.body, stream) {
            (_, Some(body)) => rb.body(body),
            (Body::Empty, None) => {
                if req.method == Method::POST
                    || req.method == Method::PUT
                    || req.method == Method::PATCH
                {
                    rb.header(CONTENT_LENGTH, "0")
                } else {
                    rb
                }
            }
            (Body::Bytes(b), None) => rb
                .header(CONTENT_LENGTH, b.len().to_string())
                .body(b.clone()),
            (Body::File { path, len }, None) => {
                let f = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| Error::io("opening", path, &e))?;
                let stream = tokio_util_stream(f);
                rb.header(CONTENT_LENGTH, len.to_string())
                    .body(reqwest::Body::wrap_stream(stream))
            }
        };
        let sent = std::time::Instant::now();
        let resp = rb.send().await.map_err(|e| {
            tracing::debug!("{} {} failed: {e}", req.method, req.url);
            tls::explain_closed(transport_error(&req.what, &e), req.scheme, &self.inner.opts)
        })?;
        // Method, URL, status and time only: never headers (they may hold credentials).
        tracing::debug!(
            "{} {} -> {} ({:.1} ms, {:?})",
            req.method,
            req.url,
            resp.status().as_u16(),
            sent.elapsed().as_secs_f64() * 1000.0,
            resp.version()
        );
        Ok(Response {
            inner: resp,
            _permit: permit,
        })
    }
}

/// The challenges of a response's `WWW-Authenticate` headers.
fn challenges_of(resp: &reqwest::Response) -> Vec<Challenge> {
    resp.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(auth::parse_www_authenticate)
        .collect()
}

/// A file as a stream of byte chunks.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(
        (file, vec![0u8; 256 * 1024]),
        |(mut f, mut buf)| async move {
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    Some((Ok(chunk), (f, buf)))
                }
                Err(e) => Some((Err(e), (f, buf))),
            }
        },
    )
}

async fn read_limited(mut resp: reqwest::Response, limit: usize, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(what, &e))? {
        if buf.len() + chunk.len() > limit {
            return Err(Error::invalid_response(format!(
                "{what}: response exceeds {limit} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// A reqwest error as a transport error (retryable unless it is a builder error).
pub fn transport_error(what: &str, err: &reqwest::Error) -> Error {
    let mut msg = format!("{what}: ");
    if err.is_timeout() {
        msg.push_str("timed out");
    } else if err.is_connect() {
        msg.push_str("cannot connect");
    } else {
        msg.push_str("request failed");
    }
    // The error chain holds the useful part (connection refused, certificate problems, …).
    let mut source: Option<&dyn std::error::Error> = Some(err);
    let mut seen = Vec::<String>::new();
    while let Some(s) = source {
        let text = s.to_string();
        // reqwest's own text repeats the URL; keep the causes.
        if !seen.iter().any(|t| t.contains(&text)) && !text.starts_with("error sending request") {
            seen.push(text);
        }
        source = s.source();
    }
    if !seen.is_empty() {
        msg.push_str(": ");
        msg.push_str(&seen.join(": "));
    }
    let cert = seen
        .iter()
        .any(|t| t.contains("certificate") || t.contains("UnknownIssuer"));
    let not_tls = seen
        .iter()
        .any(|t| t.contains("InvalidContentType") || t.contains("corrupt message"));
    if cert {
        msg.push_str(
            " (is the registry's CA trusted? add it with `spack config add config:ssl_certs:<path>`)",
        );
    } else if not_tls {
        msg.push_str(" (the server does not speak TLS: for a plain-HTTP registry use oci+http://)");
    }
    Error::new(ErrorKind::Transport, msg).with_retryable(!err.is_builder() && !cert && !not_tls)
}

/// Parse the registry's `{"errors":[{"code","message"}]}` body, if it is one.
pub fn parse_error_codes(body: &[u8]) -> Vec<RegistryCode> {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        code: Option<String>,
        message: Option<String>,
        detail: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Body>(body)
        .map(|b| {
            b.errors
                .into_iter()
                .map(|i| {
                    let mut message = i.message.unwrap_or_default();
                    // A string detail names the thing (distribution: the missing blob's
                    // digest for BLOB_UNKNOWN); keep it, bounded.
                    if let Some(serde_json::Value::String(d)) = i.detail {
                        if !d.is_empty() && !message.contains(&d) {
                            let d: String = d.chars().take(200).collect();
                            message = if message.is_empty() {
                                d
                            } else {
                                format!("{message} ({d})")
                            };
                        }
                    }
                    RegistryCode {
                        code: i.code.unwrap_or_default(),
                        message,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Turn a non-success response into an error: reads at most [`MAX_ERROR_BODY`] bytes of the
/// body, keeps the registry's error codes, classifies the status.
pub async fn error_from_response(resp: Response, what: &str) -> Error {
    let status = resp.status();
    let retry_after = resp.header("retry-after").and_then(parse_retry_after);
    let content_type = resp.header("content-type").unwrap_or("").to_string();
    let mut inner = resp.inner;
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = inner.chunk().await {
        let room = MAX_ERROR_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    let codes = parse_error_codes(&body);
    let kind = match status.as_u16() {
        404 => ErrorKind::NotFound,
        401 | 403 => ErrorKind::Authentication,
        _ => ErrorKind::Registry,
    };
    let mut msg = format!("{what}: HTTP {status}");
    if codes.is_empty() && content_type.starts_with("text/html") {
        msg.push_str(" (an HTML page instead of a registry reply: a proxy or login portal?)");
    }
    Error::http(kind, msg, status.as_u16(), codes)
        .with_retryable(is_retryable_status(status.as_u16()))
        .with_retry_after(retry_after)
}
