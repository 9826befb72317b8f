//! wss:// end to end: a TLS-terminating proxy with a self-signed certificate in front of an
//! in-process server, and a client that trusts that certificate through `tls_config`.

#![cfg(feature = "tls")]

mod common;

use common::*;
use futures_util::StreamExt;
use happn_client::rustls;
use happn_client::{Client, ClientConfig, Error, OnOptions, SetOptions};
use happn_rs::StopMode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Proxy TLS on a new port to `upstream`; returns the port and the certificate to trust.
async fn tls_proxy(upstream: std::net::SocketAddr) -> (u16, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let server_config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, cert)
}

#[tokio::test]
async fn wss_with_a_custom_root() {
    let s = server(false).await;
    let (port, cert) = tls_proxy(s.local_addr).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = ClientConfig::new("localhost", port);
    config.secure = true;
    config.tls_config = Some(Arc::new(tls));
    let c = Client::connect(config).await.unwrap();
    let mut sub = c.on("/tls/*", OnOptions::default()).await.unwrap();
    c.set("/tls/1", &json!({"secure": true}), SetOptions::default()).await.unwrap();
    assert_eq!(within(sub.next()).await.unwrap().data["secure"], true);
    c.disconnect().await.unwrap();

    // With the default (webpki) roots the self-signed certificate is refused.
    let mut config = ClientConfig::from_url(format!("wss://localhost:{port}"));
    config.connect_timeout = Duration::from_secs(5);
    let err = Client::connect(config).await.unwrap_err();
    assert!(matches!(err, Error::Io(_) | Error::WebSocket(_)), "{err:?}");
    s.stop(StopMode::NoReconnect).await;
}
