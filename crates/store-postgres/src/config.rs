//! The connection URL: what tokio-postgres reads, plus the TLS parameters it does not.
//!
//! tokio-postgres understands `sslmode=disable|prefer|require` and refuses any option it does
//! not know, while operators write libpq URLs (`sslmode=verify-full`, `sslrootcert=/ca.pem`). So
//! the URL is read here first: the TLS parameters are taken out and decided on, the rest is
//! handed to tokio-postgres unchanged.
//!
//! What each `sslmode` does here (the careful reading: encryption without checking whom you talk
//! to protects from nothing but a passive listener):
//! * absent, `disable`, `allow`, `prefer`: a plain connection. (libpq's default `prefer` would
//!   try TLS and accept any certificate; here TLS is something you ask for.)
//! * `require`, `verify-ca`, `verify-full`: TLS through rustls, and the server's certificate
//!   must chain to a trusted root (the Mozilla roots, plus the PEM file `sslrootcert` names) and
//!   name the host. That is libpq's `verify-full`; libpq's `require` skips the check unless a
//!   root file exists, which this does not copy.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A parsed connection URL.
#[derive(Debug)]
pub(crate) struct Target {
    pub config: tokio_postgres::Config,
    /// TLS asked for (`sslmode` require / verify-ca / verify-full).
    pub tls: bool,
    /// Extra trusted root certificates (PEM), from `sslrootcert`.
    pub root_cert: Option<PathBuf>,
}

impl Target {
    /// Parse a `postgres://` / `postgresql://` URL or a libpq key=value string (values without
    /// spaces or quotes).
    pub fn parse(url: &str) -> Result<Target, String> {
        let mut tls = false;
        let mut root_cert = None;
        let mut take = |key: &str, value: &str| -> Result<bool, String> {
            match key {
                "sslmode" => {
                    tls = match value {
                        "disable" | "allow" | "prefer" => false,
                        "require" | "verify-ca" | "verify-full" => true,
                        other => {
                            return Err(format!(
                                "unknown sslmode {other:?} (disable, prefer, require, verify-ca or verify-full)"
                            ))
                        }
                    };
                    Ok(true)
                }
                "sslrootcert" => {
                    root_cert = Some(PathBuf::from(value));
                    Ok(true)
                }
                _ => Ok(false),
            }
        };
        let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            match url.split_once('?') {
                None => url.to_string(),
                Some((base, query)) => {
                    let mut kept = Vec::new();
                    for pair in query.split('&').filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        if !take(&percent_decode(k), &percent_decode(v))? {
                            kept.push(pair);
                        }
                    }
                    if kept.is_empty() {
                        base.to_string()
                    } else {
                        format!("{base}?{}", kept.join("&"))
                    }
                }
            }
        } else {
            let mut kept = Vec::new();
            for token in url.split_whitespace() {
                let (k, v) = token.split_once('=').unwrap_or((token, ""));
                if !take(k, v)? {
                    kept.push(token);
                }
            }
            kept.join(" ")
        };
        let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        config.ssl_mode(if tls { SslMode::Require } else { SslMode::Disable });
        Ok(Target { config, tls, root_cert })
    }

    /// `user@host:port/db` for messages and logs: never the password.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let hosts: Vec<String> = c
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let host = match h {
                    Host::Tcp(name) => name.clone(),
                    #[cfg(unix)]
                    Host::Unix(path) => path.display().to_string(),
                };
                let port = c.get_ports().get(i).or(c.get_ports().first()).copied().unwrap_or(5432);
                format!("{host}:{port}")
            })
            .collect();
        let hosts = if hosts.is_empty() {
            "localhost:5432".to_string()
        } else {
            hosts.join(",")
        };
        let user = c.get_user().unwrap_or("");
        let db = c.get_dbname().unwrap_or(user);
        format!("{user}@{hosts}/{db}{}", if self.tls { " (TLS)" } else { "" })
    }

    /// The connector: rustls with the roots described in the module docs. Used for plain
    /// connections too (with `sslmode` disabled it is never asked to connect), so every
    /// connection has one type.
    pub fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(file) = &self.root_cert {
            let certs = CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", file.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", file.display()))?;
            if certs.is_empty() {
                return Err(format!("sslrootcert {} holds no certificate", file.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {}: unusable certificate: {e}", file.display()))?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_unless_tls_is_asked_for() {
        for url in [
            "postgres://happn@db.example:5433/cluster",
            "postgres://happn@db.example/cluster?sslmode=disable",
            "postgresql://happn@db.example/cluster?sslmode=prefer&application_name=x",
        ] {
            let t = Target::parse(url).unwrap();
            assert!(!t.tls, "{url}");
            assert_eq!(t.config.get_ssl_mode(), SslMode::Disable, "{url}");
        }
        let t = Target::parse("postgresql://happn@db.example/cluster?sslmode=prefer&application_name=x").unwrap();
        assert_eq!(t.config.get_application_name(), Some("x"), "other options pass through");
    }

    #[test]
    fn require_and_verify_modes_use_tls_with_the_root_file() {
        let t = Target::parse("postgres://happn:secret@db.example:5433/cluster?sslmode=require").unwrap();
        assert!(t.tls);
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.root_cert, None);
        assert_eq!(t.describe(), "happn@db.example:5433/cluster (TLS)", "no password in messages");
        let t =
            Target::parse("postgres://happn@db.example/cluster?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3").unwrap();
        assert!(t.tls);
        assert_eq!(t.root_cert.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        assert_eq!(t.config.get_connect_timeout(), Some(&std::time::Duration::from_secs(3)));
        let t = Target::parse("host=db.example port=5434 user=happn sslmode=verify-ca sslrootcert=/ca.pem").unwrap();
        assert!(t.tls);
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.root_cert.as_deref(), Some(std::path::Path::new("/ca.pem")));
        assert_eq!(t.describe(), "happn@db.example:5434/happn (TLS)");
    }

    #[test]
    fn bad_urls_and_root_files_are_refused_clearly() {
        let e = Target::parse("postgres://h/db?sslmode=sometimes").unwrap_err();
        assert!(e.contains("sslmode"), "{e}");
        let e = Target::parse("postgres://h/db?bogus=1").unwrap_err();
        assert!(e.contains("invalid PostgreSQL URL"), "{e}");
        let t = Target::parse("postgres://h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem").unwrap();
        let e = t.connector().err().expect("a missing root file is an error");
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let empty = std::env::temp_dir().join(format!("happn-pg-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let t = Target::parse(&format!("postgres://h/db?sslmode=require&sslrootcert={}", empty.display())).unwrap();
        let e = t.connector().err().expect("a file without certificates is an error");
        assert!(e.contains("no certificate"), "{e}");
        std::fs::remove_file(&empty).unwrap();
        assert!(
            Target::parse("postgres://h/db?sslmode=require").unwrap().connector().is_ok(),
            "the Mozilla roots alone"
        );
    }
}
