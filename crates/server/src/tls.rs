//! HTTPS and WSS: `transport: {mode: "https", ...}` as the original configures it. The
//! certificate comes from PEM text in the config (`cert` + `key`), or from files (`certPath` +
//! `keyPath`, by default `~/.happn-https-cert` and `~/.happn-https-key`); when neither file
//! exists a self-signed pair is generated and written there, so the next start reuses it.
//! rustls with the ring provider: no system TLS library is needed.

use crate::config::ConfigError;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

pub const DEFAULT_CERT_FILE: &str = ".happn-https-cert";
pub const DEFAULT_KEY_FILE: &str = ".happn-https-key";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Transport {
    #[default]
    Http,
    Https(CertSource),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `cert` + `key`: PEM text in the config.
    Inline { cert: String, key: String },
    /// `certPath` + `keyPath`: PEM files, generated when both are missing.
    Files { cert_path: PathBuf, key_path: PathBuf },
}

impl Transport {
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Https(_) => "https",
        }
    }

    /// Read the config's `transport` object.
    pub fn from_value(v: &Value, warnings: &mut Vec<String>) -> Result<Transport, ConfigError> {
        let obj = v.as_object().ok_or_else(|| type_error("transport", "an object", v))?;
        let string = |k: &str| -> Result<Option<String>, ConfigError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(type_error(&format!("transport.{k}"), "a string", other)),
            }
        };
        // Which keys are read: config::keys (the reference test checks the list).
        for k in obj.keys() {
            crate::config::keys::check(&format!("transport.{k}"), warnings);
        }
        match string("mode")?.as_deref() {
            None | Some("http") => return Ok(Transport::Http),
            Some("https") => {}
            Some(other) => {
                return Err(invalid(
                    "transport.mode",
                    format!("unknown transport mode {other:?}: can only be \"http\" or \"https\""),
                ))
            }
        }
        let source = match (string("cert")?, string("key")?) {
            (Some(cert), Some(key)) => CertSource::Inline { cert, key },
            (Some(_), None) => return Err(invalid("transport.key", "key missing for cert".into())),
            (None, Some(_)) => return Err(invalid("transport.cert", "cert missing for key".into())),
            (None, None) => match (string("certPath")?, string("keyPath")?) {
                (Some(c), Some(k)) => CertSource::Files {
                    cert_path: c.into(),
                    key_path: k.into(),
                },
                (None, None) => {
                    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or_else(|| {
                        invalid(
                            "transport.certPath",
                            "no home directory for the default certificate files: set certPath and keyPath".into(),
                        )
                    })?;
                    let home = PathBuf::from(home);
                    CertSource::Files {
                        cert_path: home.join(DEFAULT_CERT_FILE),
                        key_path: home.join(DEFAULT_KEY_FILE),
                    }
                }
                (Some(_), None) => return Err(invalid("transport.keyPath", "needed together with certPath".into())),
                (None, Some(_)) => return Err(invalid("transport.certPath", "needed together with keyPath".into())),
            },
        };
        Ok(Transport::Https(source))
    }
}

fn type_error(key: &str, expected: &'static str, got: &Value) -> ConfigError {
    ConfigError::Type {
        key: key.into(),
        expected,
        got: crate::config::describe(got),
    }
}

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("missing key file: {0}")]
    MissingKeyFile(String),
    #[error("missing cert file: {0}")]
    MissingCertFile(String),
    #[error("cannot read {path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("cannot write the generated certificate to {path}: {err}")]
    Write { path: String, err: std::io::Error },
    #[error("{what} is not usable PEM: {message}")]
    Pem { what: String, message: String },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(String),
}

/// The PEM pair to serve with, generating (and saving) one when the files are missing.
/// `host` is added to the generated certificate's names when it is a specific address.
pub fn load_pem(source: &CertSource, host: &str) -> Result<(String, String), TlsError> {
    let (cert_path, key_path) = match source {
        CertSource::Inline { cert, key } => return Ok((cert.clone(), key.clone())),
        CertSource::Files { cert_path, key_path } => (cert_path, key_path),
    };
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|err| TlsError::Read {
            path: p.display().to_string(),
            err,
        })
    };
    match (cert_path.is_file(), key_path.is_file()) {
        (true, true) => Ok((read(cert_path)?, read(key_path)?)),
        (true, false) => Err(TlsError::MissingKeyFile(key_path.display().to_string())),
        (false, true) => Err(TlsError::MissingCertFile(cert_path.display().to_string())),
        (false, false) => {
            tracing::warn!(
                cert = %cert_path.display(),
                key = %key_path.display(),
                "certificate file missing: generating a self-signed certificate"
            );
            let (cert, key) = generate_self_signed(host)?;
            write_file(key_path, &key, 0o600)?;
            write_file(cert_path, &cert, 0o644)?;
            Ok((cert, key))
        }
    }
}

/// A self-signed certificate for localhost (and `host`), as PEM (certificate, private key).
pub fn generate_self_signed(host: &str) -> Result<(String, String), TlsError> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].iter().map(|s| s.to_string()).collect();
    let specific = !host.is_empty() && !matches!(host, "0.0.0.0" | "::" | "[::]");
    if specific && !names.iter().any(|n| n == host) {
        names.push(host.trim_matches(['[', ']']).to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((certified.cert.pem(), certified.key_pair.serialize_pem()))
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |err| TlsError::Write {
        path: path.display().to_string(),
        err,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    // The private key is created readable by its owner only.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

/// A TLS acceptor for the PEM pair (HTTP/1.1 only: websocket upgrades need it).
pub fn acceptor(cert_pem: &str, key_pem: &str) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what: "the certificate".into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: "the certificate".into(),
            message: "no CERTIFICATE section found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: "the private key".into(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn transport(v: Value) -> Result<Transport, ConfigError> {
        Transport::from_value(&v, &mut Vec::new())
    }

    #[test]
    fn config_forms() {
        assert_eq!(transport(json!({})).unwrap(), Transport::Http);
        assert_eq!(transport(json!({"mode": "http", "certPath": "x"})).unwrap(), Transport::Http);
        assert_eq!(
            transport(json!({"mode": "https", "cert": "C", "key": "K"})).unwrap(),
            Transport::Https(CertSource::Inline {
                cert: "C".into(),
                key: "K".into()
            })
        );
        assert_eq!(
            transport(json!({"mode": "https", "certPath": "/a/c.pem", "keyPath": "/a/k.pem"})).unwrap(),
            Transport::Https(CertSource::Files {
                cert_path: "/a/c.pem".into(),
                key_path: "/a/k.pem".into()
            })
        );
        match transport(json!({"mode": "https"})).unwrap() {
            Transport::Https(CertSource::Files { cert_path, key_path }) => {
                assert!(cert_path.ends_with(DEFAULT_CERT_FILE) && key_path.ends_with(DEFAULT_KEY_FILE));
            }
            other => panic!("{other:?}"),
        }
        assert!(transport(json!({"mode": "spdy"})).is_err());
        assert!(transport(json!({"mode": "https", "cert": "C"})).is_err());
        assert!(transport(json!({"mode": "https", "certPath": "c"})).is_err());
        assert!(transport(json!({"mode": 1})).is_err());
        let mut w = Vec::new();
        Transport::from_value(&json!({"mode": "http", "ca": "x"}), &mut w).unwrap();
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn generated_pair_is_saved_reused_and_usable() {
        let dir = std::env::temp_dir().join(format!("happn-rs-tls-{}", uuid::Uuid::new_v4()));
        let source = CertSource::Files {
            cert_path: dir.join("cert.pem"),
            key_path: dir.join("key.pem"),
        };
        let (cert, key) = load_pem(&source, "0.0.0.0").unwrap();
        assert!(cert.contains("BEGIN CERTIFICATE") && key.contains("PRIVATE KEY"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join("key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_pem(&source, "0.0.0.0").unwrap(), (cert.clone(), key.clone()), "reused");
        acceptor(&cert, &key).unwrap();

        std::fs::remove_file(dir.join("key.pem")).unwrap();
        assert!(matches!(load_pem(&source, "h"), Err(TlsError::MissingKeyFile(_))));
        std::fs::remove_file(dir.join("cert.pem")).unwrap();
        std::fs::write(dir.join("key.pem"), &key).unwrap();
        assert!(matches!(load_pem(&source, "h"), Err(TlsError::MissingCertFile(_))));
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(matches!(acceptor("garbage", &key), Err(TlsError::Pem { .. })));
        assert!(matches!(acceptor(&cert, "garbage"), Err(TlsError::Pem { .. })));
        let (_, other_key) = generate_self_signed("10.1.2.3").unwrap();
        assert!(matches!(acceptor(&cert, &other_key), Err(TlsError::Config(_))), "mismatched pair");
    }
}
