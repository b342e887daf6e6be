//! The bearer-token flow at the engine level, against a small in-process fake: a registry
//! that wants `Bearer tok-<scope…>` and a token endpoint that counts its requests. (The
//! Python suite runs the same flow against the real distribution server and a JWT-signing
//! token server: tests/test_auth.py.)

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spack_oci_rs::transport::auth::{Credentials, StaticCredentials};
use spack_oci_rs::transport::{Client, ClientOptions};
use spack_oci_rs::{Digest, ErrorKind, Reference};

#[derive(Default)]
struct State {
    /// Token requests by their query (scopes, service, client id, Basic credentials).
    token_requests: Vec<String>,
    /// Authorization headers the registry saw.
    seen: Vec<Option<String>>,
    /// Reject tokens issued before this many token requests (to force a refresh).
    reject_first: usize,
}

struct Fake {
    port: u16,
    state: Arc<Mutex<State>>,
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &str) {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    let _ = write!(out, "Content-Length: {}\r\n\r\n{body}", body.len());
    let _ = stream.write_all(out.as_bytes());
}

fn handle(mut stream: TcpStream, port: u16, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split(' ').nth(1).unwrap_or("").to_string();
    let mut auth = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                auth = Some(v.trim().to_string());
            }
        }
    }
    if let Some(query) = target.strip_prefix("/token?") {
        // Slow enough that concurrent requests pile up behind the first.
        std::thread::sleep(Duration::from_millis(150));
        let n = {
            let mut s = state.lock().unwrap();
            s.token_requests
                .push(format!("{query} auth={}", auth.as_deref().unwrap_or("-")));
            s.token_requests.len()
        };
        let scopes: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .collect();
        let body = format!(
            r#"{{"access_token":"tok{n}-{}","expires_in":300}}"#,
            scopes.join("+")
        );
        respond(
            &mut stream,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            &body,
        );
        return;
    }
    let reject_first = {
        let mut s = state.lock().unwrap();
        s.seen.push(auth.clone());
        s.reject_first
    };
    // /v2/<repo>/blobs/<digest>: needs a token whose scopes include this repository's pull.
    let repo = target
        .strip_prefix("/v2/")
        .and_then(|t| t.split("/blobs/").next())
        .unwrap_or("");
    let ok = auth.as_deref().is_some_and(|a| {
        let Some(tok) = a.strip_prefix("Bearer tok") else {
            return false;
        };
        let (n, scopes) = tok.split_once('-').unwrap_or(("0", ""));
        n.parse::<usize>().unwrap_or(0) > reject_first
            && scopes
                .split('+')
                .any(|s| s.starts_with(&format!("repository:{repo}:pull")))
    });
    if ok {
        respond(
            &mut stream,
            "200 OK",
            &[("Docker-Content-Digest", "x".into())],
            "",
        );
    } else {
        let challenge = format!(
            r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake",scope="repository:{repo}:pull""#
        );
        respond(
            &mut stream,
            "401 Unauthorized",
            &[("WWW-Authenticate", challenge)],
            "",
        );
    }
}

fn start() -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(State::default()));
    let st = state.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let st = st.clone();
            std::thread::spawn(move || handle(stream, port, &st));
        }
    });
    Fake { port, state }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn client(creds: Option<(&str, &str)>, host: &str) -> Client {
    let mut o = ClientOptions::default();
    o.retry.max_attempts = 1;
    if let Some((u, p)) = creds {
        let mut c = StaticCredentials::new();
        c.insert(host, Credentials::new(u, p));
        o.credentials = Arc::new(c);
    }
    Client::new(o).unwrap()
}

fn digest(i: usize) -> Digest {
    format!("sha256:{i:064x}").parse().unwrap()
}

#[test]
fn concurrent_requests_fetch_one_token_per_scope() {
    let fake = start();
    let host = format!("127.0.0.1:{}", fake.port);
    let reference = Reference::parse(&format!("oci+http://{host}/org/cache")).unwrap();
    let client = client(Some(("ci", "pw")), &host);
    let results = rt().block_on(async {
        let tasks = (0..24).map(|i| {
            let (c, r) = (client.clone(), reference.clone());
            async move { c.repository(&r).blob_exists(&digest(i)).await }
        });
        futures_util::future::join_all(tasks).await
    });
    assert!(results.iter().all(|r| matches!(r, Ok(true))), "{results:?}");
    let s = fake.state.lock().unwrap();
    assert_eq!(s.token_requests.len(), 1, "{:?}", s.token_requests);
    let q = &s.token_requests[0];
    assert!(q.contains("service=fake"), "{q}");
    assert!(q.contains("scope=repository%3Aorg%2Fcache%3Apull"), "{q}");
    assert!(q.contains("client_id=spack"), "{q}");
    assert!(
        q.contains("auth=Basic Y2k6cHc="),
        "Basic credentials at the realm: {q}"
    );
    // Every request after the first round carried the token.
    assert!(s
        .seen
        .iter()
        .filter(|a| a.is_some())
        .all(|a| a.as_deref().unwrap().starts_with("Bearer tok1-")));
}

#[test]
fn a_rejected_token_is_refreshed_once_for_everyone() {
    let fake = start();
    let host = format!("127.0.0.1:{}", fake.port);
    let reference = Reference::parse(&format!("oci+http://{host}/org/cache")).unwrap();
    let client = client(None, &host);
    let rt = rt();
    // Learn the challenge with one request: token 1 is good.
    assert!(rt
        .block_on(client.repository(&reference).blob_exists(&digest(0)))
        .unwrap());
    // From now on the registry rejects tokens 1..=1: the cached one is refused.
    fake.state.lock().unwrap().reject_first = 1;
    let results = rt.block_on(async {
        let tasks = (1..17).map(|i| {
            let (c, r) = (client.clone(), reference.clone());
            async move { c.repository(&r).blob_exists(&digest(i)).await }
        });
        futures_util::future::join_all(tasks).await
    });
    assert!(results.iter().all(|r| matches!(r, Ok(true))), "{results:?}");
    assert_eq!(fake.state.lock().unwrap().token_requests.len(), 2);
    // Rejected again after the refresh: an authentication error, no loop.
    fake.state.lock().unwrap().reject_first = 1000;
    let err = rt
        .block_on(client.repository(&reference).blob_exists(&digest(99)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert!(err.to_string().contains("org/cache"), "{err}");
    assert_eq!(fake.state.lock().unwrap().token_requests.len(), 3);
}

#[test]
fn options_debug_names_registries_not_secrets() {
    let mut c = StaticCredentials::new();
    c.insert("reg.example", Credentials::new("ci", "s3cret-pw"));
    c.insert("tok.example", Credentials::bearer_token("s3cret-token"));
    let o = ClientOptions {
        credentials: Arc::new(c),
        ..ClientOptions::default()
    };
    let dbg = format!("{o:?}");
    assert!(
        dbg.contains("reg.example") && dbg.contains("tok.example"),
        "{dbg}"
    );
    assert!(!dbg.contains("s3cret"), "{dbg}");
}
