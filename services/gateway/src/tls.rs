//! TLS on the gateway's port (HTTPS, `wss://`, the web client): the certificate it
//! presents, replaceable while the server runs ([`Tls::reload`], on SIGHUP in the binary),
//! and the listener that hands axum connections whose handshake is done.
//!
//! Handshakes run in their own tasks, so a slow or silent client never holds up the
//! others' accepts. A reload changes what new handshakes present; connections already
//! open keep the session they negotiated. Not here: TLS between the cluster's services
//! (tonic's own TLS, configured by the binary).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A client has this long to finish its handshake; then the connection is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once, at most; further connections wait in the kernel's
/// accept queue until one finishes.
const HANDSHAKES: usize = 512;
/// Connections whose handshake is done, waiting for axum to take them.
const READY_QUEUE: usize = 64;

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
    #[error("the key in {} does not belong to the certificate in {}: {what}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf, what: String },
}

/// The gateway's TLS settings: a PEM certificate chain (server certificate first, then
/// intermediates) and its PEM private key (PKCS#8, PKCS#1 or SEC1). Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    certificate: Arc<Current>,
    config: Arc<ServerConfig>,
}

/// The certificate new handshakes present, and the files it came from.
#[derive(Debug)]
struct Current {
    cert: PathBuf,
    key: PathBuf,
    /// std lock: held only to clone or replace the `Arc`, never across an `.await`.
    key_pair: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl Tls {
    /// Loads `cert` and `key`; fails if either is unreadable, not PEM, or they do not
    /// match.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key_pair = load_pair(cert, key, &provider)?;
        let certificate = Arc::new(Current {
            cert: cert.to_owned(),
            key: key.to_owned(),
            key_pair: RwLock::new(Arc::new(key_pair)),
            provider: Arc::clone(&provider),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid { path: cert.to_owned(), what: e.to_string() })?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        // The gateway speaks HTTP/1.1 (WebSocket upgrades need it).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { certificate, config: Arc::new(config) })
    }

    /// Reads the certificate and key files again; new connections get the new
    /// certificate, open ones keep theirs. On an error the old certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let c = &self.certificate;
        let key_pair = load_pair(&c.cert, &c.key, &c.provider)?;
        *c.key_pair.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key_pair);
        Ok(())
    }

    /// Wraps `listener`: what it accepts comes out with the TLS handshake done.
    pub fn listener(&self, listener: TcpListener) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (ready, queue) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept(listener, TlsAcceptor::from(Arc::clone(&self.config)), ready));
        Ok(TlsListener { queue, local })
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.key_pair.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
    };
    let invalid = |path: &Path, what: String| TlsError::Invalid { path: path.to_owned(), what };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(cert, "no certificate (expected PEM `BEGIN CERTIFICATE`)".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| invalid(key, format!("no PEM private key: {e}")))?;
    let signer = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| invalid(key, format!("unusable private key: {e}")))?;
    let pair = CertifiedKey::new(chain, signer);
    match pair.keys_match() {
        // Unknown: the key type cannot tell its public key; the handshake will.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(e) => Err(TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            what: e.to_string(),
        }),
    }
}

/// Accepts TCP connections and runs each handshake in its own task, until the
/// [`TlsListener`] is dropped (axum drops it when draining starts: the port closes).
async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            _ = ready.closed() => return,
            accepted = async {
                let permit = Arc::clone(&handshakes).acquire_owned().await;
                (permit, listener.accept().await)
            } => accepted,
        };
        let (permit, (tcp, peer)) = match accepted {
            (Ok(permit), Ok(connection)) => (permit, connection),
            (_, Err(e)) => {
                // Out of file descriptors, typically: wait instead of spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            // The semaphore is never closed.
            (Err(_), _) => return,
        };
        // Frames are small and latency matters: do not let Nagle hold them back.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            drop(permit);
            match handshake {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                // Plain HTTP on the TLS port, scanners, expired trust: the client's
                // problem, visible at debug level.
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// A listener whose connections have completed the TLS handshake (see [`Tls::listener`]).
pub struct TlsListener {
    queue: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.queue.recv().await {
            Some(connection) => connection,
            // The accept task ended (it only does once this listener is gone).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
