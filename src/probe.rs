//! `doctor`: what a registry supports and what we may do there, measured, not assumed.

use std::time::Instant;

use reqwest::header::RANGE;
use reqwest::Method;

use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::registry::request;
use crate::transport::Client;

/// The outcome of one check: `Ok(detail)` or the error's one-line message.
pub type Check = std::result::Result<String, Error>;

/// What [`probe`] found.
#[derive(Debug)]
pub struct Probe {
    /// Round-trip time of `GET /v2/` in milliseconds (the first request, connection included,
    /// then a second one on the open connection).
    pub connect_ms: f64,
    pub rtt_ms: f64,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub http_version: String,
    /// What `GET /v2/` asked for: "none", "basic" or "bearer".
    pub auth_scheme: String,
    /// Listing tags (pull permission).
    pub pull: Check,
    /// Opening (and cancelling) an upload session (push permission).
    pub push: Check,
    /// Whether the registry answers `Range` requests on blobs (`None`: no blob to try).
    pub range: Option<bool>,
    /// Whether the registry mounts blobs across repositories (`None`: not tried).
    pub mount: Option<bool>,
}

async fn ping(client: &Client, reference: &Reference) -> Result<(f64, String, String)> {
    let what = format!("contacting {}", reference.domain);
    let mut req = request(reference, Method::GET, reference.base_url(), false, &what);
    req.scopes.clear();
    let start = Instant::now();
    // Not `send`: a 401 here is an answer, not a failure.
    let resp = client
        .http()
        .get(&req.url)
        .send()
        .await
        .map_err(|e| crate::transport::transport_error(&what, &e))?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let version = format!("{:?}", resp.version());
    let scheme = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(crate::transport::auth::parse_www_authenticate)
        .and_then(|c| c.first().map(|c| c.scheme.clone()))
        .unwrap_or_else(|| "none".to_string());
    Ok((ms, version, scheme))
}

/// Probe a registry and repository: connectivity, round trip, protocol, authentication,
/// pull and push permission, `Range` and cross-repository mount support.
pub async fn probe(client: &Client, reference: &Reference) -> Result<Probe> {
    let (connect_ms, http_version, auth_scheme) = ping(client, reference).await?;
    let (rtt_ms, _, _) = ping(client, reference).await?;
    let repo = client.repository(reference);
    let tags = repo.list_tags().await;
    let pull = tags
        .as_ref()
        .map(|t| format!("{} tags", t.len()))
        .map_err(Clone::clone);
    let push = async {
        let what = format!("opening an upload session in {}", reference.repository());
        let loc = repo.start_upload(&what).await?;
        let del = request(reference, Method::DELETE, loc.to_string(), true, &what);
        let _ = client.send(&del).await;
        Ok::<_, Error>("allowed".to_string())
    }
    .await;
    // Range and mount need a blob: the config of the first tag, if any.
    let mut range = None;
    let mut mount = None;
    if let Some(tag) = tags.ok().and_then(|t| t.into_iter().next()) {
        if let Ok(m) = repo.get_manifest(&tag).await {
            if let Ok(cfg) = m.config() {
                let what = format!("range request for {}", cfg.digest);
                let req = request(
                    reference,
                    Method::GET,
                    reference.blob_url(&cfg.digest),
                    false,
                    &what,
                )
                .header(RANGE, "bytes=0-0");
                if let Ok(resp) = client.send(&req).await {
                    range = Some(resp.status().as_u16() == 206);
                }
                if push.is_ok() {
                    mount = repo.mount_blob(&cfg.digest, reference).await.ok();
                }
            }
        }
    }
    Ok(Probe {
        connect_ms,
        rtt_ms,
        http_version,
        auth_scheme,
        pull,
        push,
        range,
        mount,
    })
}
