//! TLS material from PEM files: a certificate chain with its private key
//! (checked to match), and trust bundles. Read when the configuration is
//! validated, so a missing file, unparsable PEM or mismatched key is a
//! config error that names the file, line and key; the loaded bytes are
//! part of the configuration, so a reload sees when a file's content
//! changed (rotation) and a bad new file leaves the old material serving.

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`): {detail}")]
    NoCertificate { path: PathBuf, detail: String },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {detail}")]
    NoKey { path: PathBuf, detail: String },
    #[error("{path}: certificate does not parse: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error("the private key in {key} does not match the certificate in {cert}: {detail}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
}

/// A certificate chain (leaf first) and the private key for its leaf.
#[derive(Clone)]
pub struct KeyPair {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub chain: Arc<[CertificateDer<'static>]>,
    key: Arc<PrivateKeyDer<'static>>,
    /// The leaf's subject, for logs and metrics.
    pub subject: String,
    /// The leaf's `notAfter`, seconds since the Unix epoch.
    pub not_after: i64,
    /// The leaf's `notBefore`, seconds since the Unix epoch.
    pub not_before: i64,
}

impl PartialEq for KeyPair {
    fn eq(&self, other: &Self) -> bool {
        self.cert_path == other.cert_path
            && self.key_path == other.key_path
            && self.chain == other.chain
            && self.key.secret_der() == other.key.secret_der()
    }
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl KeyPair {
    /// Read a chain and key, and check that the key belongs to the leaf.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<KeyPair, PemError> {
        let chain = read_certificates(cert_path)?;
        let key_bytes = read(key_path)?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| PemError::NoKey {
            path: key_path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let (subject, not_before, not_after) = leaf_facts(cert_path, &chain[0])?;
        let pair = KeyPair {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            chain: chain.into(),
            key: Arc::new(key),
            subject,
            not_before,
            not_after,
        };
        pair.certified_key().map_err(|e| PemError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Ok(pair)
    }

    /// What an operator should hear about, though the pair loads: a key
    /// file others can read, a certificate not valid now.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(mode) = readable_by_others(&self.key_path) {
            out.push(format!(
                "private key {} is readable by other users (mode {mode:o}); chmod 600 it",
                self.key_path.display()
            ));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if self.not_after < now {
            out.push(format!(
                "certificate {} ({}) has expired",
                self.cert_path.display(),
                self.subject
            ));
        } else if self.not_before > now {
            out.push(format!(
                "certificate {} ({}) is not valid yet",
                self.cert_path.display(),
                self.subject
            ));
        }
        out
    }

    /// The chain and key as rustls signs with them.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, rustls::Error> {
        CertifiedKey::from_der(self.chain.to_vec(), self.key.clone_key(), &super::provider()).map(Arc::new)
    }

    /// The chain and a copy of the key, for rustls builders that take them.
    pub fn parts(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.chain.to_vec(), self.key.clone_key())
    }
}

/// Trust anchors: the CA certificates a peer's chain must lead to.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustBundle {
    pub path: PathBuf,
    pub certs: Arc<[CertificateDer<'static>]>,
}

impl TrustBundle {
    /// Read every certificate of a PEM bundle; each must be a usable anchor.
    pub fn load(path: &Path) -> Result<TrustBundle, PemError> {
        let certs = read_certificates(path)?;
        let bundle = TrustBundle {
            path: path.to_path_buf(),
            certs: certs.into(),
        };
        bundle.root_store()?;
        Ok(bundle)
    }

    /// The anchors as a rustls root store.
    pub fn root_store(&self) -> Result<RootCertStore, PemError> {
        let mut store = RootCertStore::empty();
        for cert in self.certs.iter() {
            store.add(cert.clone()).map_err(|e| PemError::BadCertificate {
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
        }
        Ok(store)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file; at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = read(path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => {
            for cert in &certs {
                X509Certificate::from_der(cert).map_err(|e| PemError::BadCertificate {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })?;
            }
            Ok(certs)
        }
        Ok(_) => Err(PemError::NoCertificate {
            path: path.to_path_buf(),
            detail: "the file has no certificate block".into(),
        }),
        Err(e) => Err(PemError::NoCertificate {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

/// The leaf's subject, `notBefore` and `notAfter`. A leaf that is not
/// valid now still loads (refusing it would leave a listener with nothing);
/// [`KeyPair::warnings`] reports it.
fn leaf_facts(path: &Path, leaf: &CertificateDer<'_>) -> Result<(String, i64, i64), PemError> {
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| PemError::BadCertificate {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let validity = cert.validity();
    Ok((
        cert.subject().to_string(),
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

/// The file's permission bits when group or others can read it.
fn readable_by_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o044 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn loads_a_matching_pair_and_refuses_a_mismatched_one() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair();
        let (_, other_key) = pair();
        let c = write(dir.path(), "c.pem", &cert);
        let k = write(dir.path(), "k.pem", &key);
        let wrong = write(dir.path(), "wrong.pem", &other_key);
        let loaded = KeyPair::load(&c, &k).unwrap();
        assert_eq!(loaded.chain.len(), 1);
        assert!(loaded.not_after > 0);
        let e = KeyPair::load(&c, &wrong).unwrap_err();
        assert!(matches!(e, PemError::KeyMismatch { .. }), "{e}");
    }

    #[test]
    fn missing_and_garbage_files_say_which() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = pair();
        let c = write(dir.path(), "c.pem", &cert);
        let garbage = write(dir.path(), "g.pem", "not pem at all\n");
        let e = KeyPair::load(&c, &dir.path().join("absent.pem")).unwrap_err();
        assert!(e.to_string().contains("absent.pem"), "{e}");
        let e = KeyPair::load(&garbage, &c).unwrap_err();
        assert!(matches!(e, PemError::NoCertificate { .. }), "{e}");
        let e = KeyPair::load(&c, &garbage).unwrap_err();
        assert!(matches!(e, PemError::NoKey { .. }), "{e}");
        let e = TrustBundle::load(&garbage).unwrap_err();
        assert!(e.to_string().contains("g.pem"), "{e}");
        assert_eq!(TrustBundle::load(&c).unwrap().certs.len(), 1);
    }
}
