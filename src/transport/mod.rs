//! The one request path: one reqwest client (rustls, HTTP/1.1 keep-alive and HTTP/2),
//! per-registry limits ([`limits`]: adaptive concurrency, pacing, `Retry-After` holds),
//! authentication (anonymous, Basic, bearer tokens cached per scope), an unreachable
//! registry remembered and reported once, and one retry policy ([`retry`]). Every registry
//! request goes through [`Client::send`] (an operation of several requests shares one
//! [`Retrier`]); registry verbs live in `crate::registry`, never here.

pub mod auth;
pub mod credentials;
pub mod limits;
pub mod retry;
pub mod tls;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};

use crate::error::{Cause, Error, ErrorKind, RegistryCode, Result};
use crate::reference::Scheme;
use auth::{
    AuthCache, Challenge, CredentialProvider, HostAuth, LoginFailure, Scope, SecretKind,
    StaticCredentials,
};
use limits::{Limits, Permit, StatsSnapshot};
use retry::{is_retryable_status, is_throttle_status, parse_retry_after, Retrier, RetryPolicy};

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
/// A registry found unreachable (connection refused, DNS) fails later requests at once, with
/// the same error, for this long: it is reported once, not once per request.
pub const UNREACHABLE_MEMORY: Duration = Duration::from_secs(10);

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

/// A request body.
#[derive(Clone, Debug)]
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// `len` bytes of a file from `offset`, reopened for every attempt.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    /// A stream, sent once (a request with it is never re-sent as it is).
    Stream(OnceBody),
}

/// A streaming body that can be taken once.
#[derive(Clone, Default)]
pub struct OnceBody(Arc<Mutex<Option<reqwest::Body>>>);

impl OnceBody {
    pub fn new(body: reqwest::Body) -> Self {
        Self(Arc::new(Mutex::new(Some(body))))
    }

    fn take(&self) -> Option<reqwest::Body> {
        self.0.lock().expect("body lock").take()
    }
}

impl std::fmt::Debug for OnceBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnceBody")
    }
}

impl Body {
    /// Whether the body can be sent again.
    pub fn replayable(&self) -> bool {
        !matches!(self, Body::Stream(_))
    }
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
    /// Whether sending it twice is harmless even when the first one was interrupted after
    /// the registry may have acted on part of it (see [`retry::may_resend`]). True except
    /// for PATCH; upload code clears it for the PUT closing a session.
    pub idempotent: bool,
}

impl Request {
    pub fn new(method: Method, url: impl Into<String>, what: impl Into<String>) -> Self {
        Self {
            idempotent: method != Method::PATCH,
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
    _permit: Permit,
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
    limits: Limits,
    /// Registries found unreachable, with when and the error.
    unreachable: Mutex<HashMap<String, (Instant, Error)>>,
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
                limits: Limits::default(),
                unreachable: Mutex::new(HashMap::new()),
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

    fn host_limit(&self, host: &str) -> Arc<limits::HostLimit> {
        self.inner
            .limits
            .host(host, self.inner.opts.max_concurrency_per_registry)
    }

    /// What rate limiting and interruptions cost so far (subtract two snapshots for one
    /// operation's share).
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.limits.stats().snapshot()
    }

    pub(crate) fn count_resumed(&self) {
        self.inner.limits.stats().resumed();
    }

    /// Send a request: authentication, limits, and retries as [`retry`] decides. Returns the
    /// response for any status the caller must judge (2xx, 3xx, and 4xx other than 401);
    /// retryable failures are retried and, when attempts run out, returned as errors.
    pub async fn send(&self, req: &Request) -> Result<Response> {
        self.send_with(req, &mut self.retrier()).await
    }

    /// [`Client::send`] as one request of an operation whose retries `retrier` counts.
    pub async fn send_with(&self, req: &Request, retrier: &mut Retrier) -> Result<Response> {
        self.check_reachable(&req.host)?;
        loop {
            let err = match self.attempt(req).await {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            if !retry::may_resend(req.idempotent, req.body.replayable(), &err) {
                return Err(err);
            }
            retrier.wait(err, &req.what).await?;
        }
    }

    /// One attempt: a retryable status becomes an error; the registry's limits learn from it.
    async fn attempt(&self, req: &Request) -> Result<Response> {
        let resp = match self.send_authenticated(req).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.note_unreachable(&req.host, e)),
        };
        let status = resp.status().as_u16();
        let host = self.host_limit(&req.host);
        if !is_retryable_status(status) {
            host.success();
            return Ok(resp);
        }
        let err = error_from_response(resp, &req.what).await;
        if is_throttle_status(status) {
            host.throttled(err.retry_after());
        }
        Err(err)
    }

    /// Fail at once, with the error seen, for a registry found unreachable a moment ago.
    fn check_reachable(&self, host: &str) -> Result<()> {
        let mut down = self.inner.unreachable.lock().expect("unreachable lock");
        match down.get(host) {
            Some((when, err)) if when.elapsed() < UNREACHABLE_MEMORY => Err(err.clone()),
            Some(_) => {
                down.remove(host);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn note_unreachable(&self, host: &str, err: Error) -> Error {
        if err.cause() != Some(Cause::Unreachable) {
            return err;
        }
        let err = err.map_message(|m| format!("registry {host} is unreachable: {m}"));
        let mut down = self.inner.unreachable.lock().expect("unreachable lock");
        down.entry(host.to_string())
            .or_insert_with(|| (Instant::now(), err.clone()));
        err
    }

    /// A fresh retry state for one operation, with this client's policy and statistics.
    pub fn retrier(&self) -> Retrier {
        Retrier::with_stats(&self.inner.opts.retry, self.inner.limits.stats().clone())
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
            transport_error(&what, &e).map_message(|m| {
                format!(
                    "{m} ({} sends clients to this token server to log in: check that it \
                     is reachable, and the https_proxy/no_proxy settings)",
                    req.host
                )
            })
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
            ));
        }
        let body = read_limited(resp, MAX_TOKEN_BODY, &what).await?;
        auth::parse_token_response(&body, &what)
    }

    async fn send_once(&self, req: &Request, auth: Option<&str>) -> Result<Response> {
        let permit = self.host_limit(&req.host).acquire().await;
        let mut rb = self
            .inner
            .http
            .request(req.method.clone(), &req.url)
            .headers(req.headers.clone());
        if let Some(a) = auth {
            rb = rb.header(AUTHORIZATION, a);
        }
        rb = with_body(rb, req).await?;
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

/// `rb` with the body of `req` (and its `Content-Length` where known).
async fn with_body(rb: reqwest::RequestBuilder, req: &Request) -> Result<reqwest::RequestBuilder> {
    Ok(match &req.body {
        Body::Empty if [Method::POST, Method::PUT, Method::PATCH].contains(&req.method) => {
            rb.header(CONTENT_LENGTH, "0")
        }
        Body::Empty => rb,
        Body::Bytes(b) => rb
            .header(CONTENT_LENGTH, b.len().to_string())
            .body(b.clone()),
        Body::File { path, offset, len } => {
            let stream = file_stream(path, *offset, *len).await?;
            rb.header(CONTENT_LENGTH, len.to_string())
                .body(reqwest::Body::wrap_stream(stream))
        }
        Body::Stream(once) => rb.body(once.take().ok_or_else(|| {
            Error::invalid_input(format!("{}: a streamed body sent twice", req.what))
        })?),
    })
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

/// `len` bytes of a file from `offset`, as a stream of byte chunks.
pub async fn file_stream(
    path: &std::path::Path,
    offset: u64,
    len: u64,
) -> Result<impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io("opening", path, &e))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| Error::io("reading", path, &e))?;
    let file = file.take(len);
    Ok(futures_util::stream::unfold(
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
    ))
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
    let chain = error_chain(err);
    let seen = &chain;
    if !seen.is_empty() {
        msg.push_str(": ");
        msg.push_str(&seen.join(": "));
    }
    let has = |words: &[&str]| seen.iter().any(|t| words.iter().any(|w| t.contains(w)));
    let cert = has(&["certificate", "UnknownIssuer"]);
    let not_tls = has(&["InvalidContentType", "corrupt message"]);
    let cause = if cert || not_tls {
        Cause::Tls
    } else if err.is_timeout() {
        Cause::Timeout
    } else if err.is_connect()
        && has(&[
            "Connection refused",
            "dns error",
            "failed to lookup",
            "No route to host",
            "Network is unreachable",
            "Name or service not known",
        ])
    {
        Cause::Unreachable
    } else {
        Cause::Interrupted
    };
    if cert {
        msg.push_str(
            " (is the registry's CA trusted? add it with `spack config add config:ssl_certs:<path>`)",
        );
    } else if not_tls {
        msg.push_str(" (the server does not speak TLS: for a plain-HTTP registry use oci+http://)");
    }
    let kind = if err.is_builder() {
        ErrorKind::InvalidInput
    } else {
        ErrorKind::Transport
    };
    Error::new(kind, msg)
        .with_cause(cause)
        .with_source(std::io::Error::other(chain.join(": ")))
}

/// The texts of an error's source chain, without repeats (reqwest's own text repeats the
/// URL; the causes are the useful part: connection refused, certificate problems, …).
fn error_chain(err: &reqwest::Error) -> Vec<String> {
    let mut source: Option<&dyn std::error::Error> = Some(err);
    let mut seen = Vec::<String>::new();
    while let Some(s) = source {
        let text = s.to_string();
        if !seen.iter().any(|t| t.contains(&text)) && !text.starts_with("error sending request") {
            seen.push(text);
        }
        source = s.source();
    }
    seen
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
    Error::http(kind, msg, status.as_u16(), codes).with_retry_after(retry_after)
}
