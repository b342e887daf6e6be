//! TLS settings of the HTTP client: trusted roots, verification, client certificates.
//!
//! Trusted roots are the system's (rustls-platform-verifier; on Linux the system bundle,
//! replaced by `SSL_CERT_FILE` / `SSL_CERT_DIR` when those are set, as OpenSSL and Python do)
//! plus the extra CA files or directories of [`ClientOptions::ca_certs`] (Spack's
//! `config:ssl_certs`). `verify_tls: false` turns verification off, with a warning. A client
//! certificate and key (PEM) make the client present itself for mutual TLS.

use std::path::{Path, PathBuf};

use super::ClientOptions;
use crate::error::{Error, Result};
use crate::reference::Scheme;

/// Read the CA certificates of `paths`: PEM files (each must hold at least one certificate),
/// or directories of them (files that are not PEM certificates are skipped, as OpenSSL's
/// `capath` would).
pub fn load_ca_certs(paths: &[PathBuf]) -> Result<Vec<reqwest::Certificate>> {
    let mut certs = Vec::new();
    for path in paths {
        let files: Vec<PathBuf> = if path.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io("reading CA directory", path, &e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            v
        } else {
            vec![path.clone()]
        };
        for file in files {
            let pem = std::fs::read(&file).map_err(|e| Error::io("reading CA file", &file, &e))?;
            match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(c) if !c.is_empty() => certs.extend(c),
                // Directories (OpenSSL capath) may hold other files; a named file must parse.
                _ if path.is_dir() => {}
                _ => {
                    return Err(Error::invalid_input(format!(
                        "CA file {} holds no PEM certificate",
                        file.display()
                    )))
                }
            }
        }
    }
    Ok(certs)
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(&format!("reading {what}"), path, &e))
}

/// The PEM blocks of `pem`: (label, whole block including its BEGIN/END lines).
fn pem_blocks(pem: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in pem.lines() {
        let line = line.trim_end();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), format!("{line}\n")));
        } else if let Some((label, mut block)) = current.take() {
            block.push_str(line);
            block.push('\n');
            if line.starts_with("-----END ") {
                out.push((label, block));
            } else {
                current = Some((label, block));
            }
        }
    }
    out
}

/// The client identity for mutual TLS: the certificate (chain) file and the private key
/// file, PEM; `key` may be omitted when the certificate file holds the key too. Other PEM
/// blocks (`EC PARAMETERS`, …) are ignored; encrypted keys are refused with a clear message.
pub fn load_identity(cert: &Path, key: Option<&Path>) -> Result<reqwest::Identity> {
    let cert_pem = read_pem(cert, "client certificate")?;
    let key_pem = key.map(|k| read_pem(k, "client key")).transpose()?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let cert_blocks = pem_blocks(&text(&cert_pem));
    let key_blocks = match &key_pem {
        Some(k) => pem_blocks(&text(k)),
        None => cert_blocks.clone(),
    };
    let key_file = key.unwrap_or(cert);
    let certs: Vec<&String> = cert_blocks
        .iter()
        .filter(|(l, _)| l == "CERTIFICATE")
        .map(|(_, b)| b)
        .collect();
    if certs.is_empty() {
        return Err(Error::invalid_input(format!(
            "client certificate {} holds no PEM certificate",
            cert.display()
        )));
    }
    if key_blocks.iter().any(|(l, _)| l == "ENCRYPTED PRIVATE KEY")
        || key_blocks
            .iter()
            .any(|(l, b)| l.ends_with("PRIVATE KEY") && b.contains("Proc-Type: 4,ENCRYPTED"))
    {
        return Err(Error::invalid_input(format!(
            "client key {} is encrypted; give an unencrypted key (`openssl pkey -in KEY -out \
             PLAIN_KEY`)",
            key_file.display()
        )));
    }
    let keys: Vec<&String> = key_blocks
        .iter()
        .filter(|(l, _)| {
            matches!(
                l.as_str(),
                "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY"
            )
        })
        .map(|(_, b)| b)
        .collect();
    let Some(key_block) = keys.first() else {
        return Err(Error::invalid_input(match key {
            Some(k) => format!("client key {} holds no PEM private key", k.display()),
            None => format!(
                "client certificate {} holds no private key: give the key file too",
                cert.display()
            ),
        }));
    };
    let mut pem = String::new();
    for c in certs {
        pem.push_str(c);
    }
    pem.push_str(key_block);
    // The error of from_pem never quotes the PEM, only what is wrong with it.
    reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| {
        Error::invalid_input(format!(
            "cannot use client certificate {}{}: {e}",
            cert.display(),
            key.map(|k| format!(" with key {}", k.display()))
                .unwrap_or_default()
        ))
    })
}

/// Apply the TLS settings of `opts` to a reqwest client builder.
pub fn configure(
    mut builder: reqwest::ClientBuilder,
    opts: &ClientOptions,
) -> Result<reqwest::ClientBuilder> {
    let certs = load_ca_certs(&opts.ca_certs)?;
    if !certs.is_empty() {
        builder = builder.tls_certs_merge(certs);
    }
    if !opts.verify_tls {
        tracing::warn!(
            "TLS certificate verification is disabled (verify_ssl=False): registries are not \
             authenticated, and credentials may go to an impostor"
        );
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    match (&opts.client_cert, &opts.client_key) {
        (Some(cert), key) => {
            builder = builder.identity(load_identity(cert, key.as_deref())?);
        }
        (None, Some(key)) => {
            return Err(Error::invalid_input(format!(
                "client key {} given without a client certificate",
                key.display()
            )))
        }
        (None, None) => {}
    }
    Ok(builder)
}

/// Explain what a registry that requires a client certificate (mutual TLS) looks like: a
/// TLS alert (`BadCertificate`, `CertificateRequired`), or with TLS 1.3 a connection closed
/// right after the handshake. Alerts are not retried.
pub fn explain_closed(err: Error, scheme: Scheme, opts: &ClientOptions) -> Error {
    let msg = err.to_string();
    let alert = [
        "BadCertificate",
        "CertificateRequired",
        "UnknownCA",
        "AccessDenied",
    ]
    .iter()
    .any(|a| msg.contains(&format!("received fatal alert: {a}")));
    // With TLS 1.3 the server's verdict on a missing client certificate can arrive after we
    // sent the request: then all we see is the connection going away.
    let closed = [
        "channel closed",
        "connection closed",
        "stream closed",
        "broken pipe",
        "connection reset",
    ]
    .iter()
    .any(|s| msg.contains(s));
    if scheme != Scheme::Https || !(alert || closed) {
        return err;
    }
    let hint = match &opts.client_cert {
        None => "if the registry requires a client certificate (mutual TLS), configure one \
                 with client_cert and client_key"
            .to_string(),
        Some(_) if !alert => return err,
        Some(cert) => format!(
            "the registry refused the client certificate {}: is it signed by a CA the \
             registry trusts, and unexpired?",
            cert.display()
        ),
    };
    let err = err.map_message(|m| format!("{m} ({hint})"));
    if alert {
        err.with_cause(crate::error::Cause::Tls)
    } else {
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_split() {
        let pem = "junk\n-----BEGIN EC PARAMETERS-----\nBggq\n-----END EC PARAMETERS-----\n\
                   -----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let b = pem_blocks(pem);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].0, "EC PARAMETERS");
        assert_eq!(b[1].0, "EC PRIVATE KEY");
        assert!(b[1].1.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        assert!(b[1].1.ends_with("-----END EC PRIVATE KEY-----\n"));
    }

    #[test]
    fn identity_errors_name_files() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(
            &key,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = load_identity(&cert, Some(&key)).unwrap_err().to_string();
        assert!(
            e.contains("c.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_identity(&cert, Some(&key)).unwrap_err().to_string();
        assert!(e.contains("k.pem") && e.contains("encrypted"), "{e}");
        let e = load_identity(&cert, None).unwrap_err().to_string();
        assert!(e.contains("no private key"), "{e}");
        let e = load_identity(&dir.path().join("missing.pem"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
