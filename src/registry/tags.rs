//! Tag listing with `Link: <…>; rel="next"` pagination.

use reqwest::Method;

use super::Repository;
use crate::error::{Error, ErrorKind, Result};
use crate::transport::error_from_response;

/// Tag lists are capped at this size per page.
pub const MAX_TAG_PAGE: usize = 16 * 1024 * 1024;

#[derive(serde::Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

/// Find the `rel="next"` target of a `Link` header.
pub fn parse_link_next(header: &str) -> Option<String> {
    for part in header.split(',') {
        let part = part.trim();
        let Some(end) = part.find('>') else { continue };
        if !part.starts_with('<') {
            continue;
        }
        let target = &part[1..end];
        let is_next = part[end + 1..].split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|v| v.trim_matches('"'))
                .is_some_and(|v| v.split_whitespace().any(|r| r.eq_ignore_ascii_case("next")))
        });
        if is_next {
            return Some(target.to_string());
        }
    }
    None
}

impl Repository {
    /// All tags of a repository, sorted, following pagination. A repository that does not
    /// exist yet has no tags.
    pub async fn list_tags(&self) -> Result<Vec<String>> {
        self.list_tags_paged(None).await
    }

    /// [`Repository::list_tags`] of a repository that must exist: a registry answering
    /// `NAME_UNKNOWN` is an error naming the registry and repository (a misspelt name is
    /// not an empty cache).
    pub async fn list_existing_tags(&self) -> Result<Vec<String>> {
        self.list_tags_in(None, false).await
    }

    /// [`Repository::list_tags`] asking for pages of `page_size` tags (`?n=`); the registry may
    /// paginate on its own either way.
    pub async fn list_tags_paged(&self, page_size: Option<usize>) -> Result<Vec<String>> {
        self.list_tags_in(page_size, true).await
    }

    async fn list_tags_in(
        &self,
        page_size: Option<usize>,
        missing_ok: bool,
    ) -> Result<Vec<String>> {
        let reference = &self.reference;
        let what = format!("listing tags of {}", reference.repository());
        let mut url = reference.tags_url();
        if let Some(n) = page_size {
            url = format!("{url}?n={n}");
        }
        let mut tags = std::collections::BTreeSet::new();
        for _page in 0..100_000 {
            let req = self.request(Method::GET, url.clone(), false, &what);
            let resp = self.client.send(&req).await?;
            if resp.status().as_u16() != 200 {
                let err = error_from_response(resp, &what).await;
                if err.kind() == ErrorKind::NotFound && err.has_code("NAME_UNKNOWN") {
                    if missing_ok {
                        return Ok(Vec::new());
                    }
                    return Err(err.context(format!(
                        "the repository {} does not exist on {}",
                        reference.name, reference.domain
                    )));
                }
                return Err(err);
            }
            let link = resp.header("link").map(str::to_string);
            let body = resp.bytes_limited(MAX_TAG_PAGE, &what).await?;
            let page: TagList = serde_json::from_slice(&body).map_err(|e| {
                Error::invalid_response(format!("{what}: {url} did not return a tag list: {e}"))
            })?;
            tags.extend(page.tags.unwrap_or_default());
            let Some(next) = link.as_deref().and_then(parse_link_next) else {
                break;
            };
            let next_url = self.resolve(&next)?;
            // Never follow a link that would downgrade https to http.
            if next_url.scheme() != reference.scheme.as_str() {
                break;
            }
            url = next_url.to_string();
        }
        Ok(tags.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_link_next;

    #[test]
    fn link_header() {
        assert_eq!(
            parse_link_next(r#"</v2/repo/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/repo/tags/list?n=2&last=b")
        );
        assert_eq!(
            parse_link_next(r#"<https://x/a>; rel="prev", <https://x/b>; rel=next"#).as_deref(),
            Some("https://x/b")
        );
        assert_eq!(parse_link_next(r#"<https://x/a>; rel="prev""#), None);
        assert_eq!(parse_link_next("garbage"), None);
    }
}
