//! Development certificates (`sluice certs dev`, `run --dev-certs DIR`): a
//! throwaway CA, a server certificate for `localhost` and loopback, and two
//! client certificates with SPIFFE IDs, so TLS and mTLS examples work with
//! no other tool. Never for production: the CA key sits next to the
//! certificates it signs.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

/// The trust domain of the development identities.
pub const TRUST_DOMAIN: &str = "sluice.test";

/// The files written, each a PEM file in the directory.
pub const FILES: [&str; 8] = [
    "ca.pem",
    "ca-key.pem",
    "server.pem",
    "server-key.pem",
    "client.pem",
    "client-key.pem",
    "other-client.pem",
    "other-client-key.pem",
];

/// The SPIFFE ID of `client.pem`.
pub fn client_id() -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/demo/sa/client")
}

/// The SPIFFE ID of `other-client.pem`.
pub fn other_client_id() -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/demo/sa/other")
}

/// Write the development certificates into `dir` unless all are there
/// already. Whether they were (re)written.
pub fn ensure(dir: &Path) -> Result<bool, String> {
    if FILES.iter().all(|f| dir.join(f).is_file()) {
        return Ok(false);
    }
    write_all(dir)?;
    Ok(true)
}

/// Write a new set of development certificates into `dir`.
pub fn write_all(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let err = |e: rcgen::Error| format!("cannot generate a certificate: {e}");
    let now = time::OffsetDateTime::now_utc();
    let valid = |params: &mut CertificateParams| {
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(365);
    };

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.distinguished_name = name("sluice development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    valid(&mut ca_params);
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err)?;
    write(dir, "ca.pem", &ca.pem(), false)?;
    write(dir, "ca-key.pem", &ca_key_pem, true)?;

    let mut server = CertificateParams::new(vec!["localhost".to_string(), "*.localhost".to_string()]).map_err(err)?;
    server.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
    server
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
    server.distinguished_name = name("localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    valid(&mut server);
    leaf(dir, "server", server, &ca)?;

    for (file, id, cn) in [
        ("client", client_id(), "demo client"),
        ("other-client", other_client_id(), "other demo client"),
    ] {
        let mut client = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let uri = rcgen::string::Ia5String::try_from(id).map_err(err)?;
        client.subject_alt_names.push(SanType::URI(uri));
        client.distinguished_name = name(cn);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        valid(&mut client);
        leaf(dir, file, client, &ca)?;
    }
    Ok(())
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn leaf(dir: &Path, stem: &str, params: CertificateParams, ca: &CertifiedIssuer<'_, KeyPair>) -> Result<(), String> {
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, ca).map_err(|e| e.to_string())?;
    write(dir, &format!("{stem}.pem"), &cert.pem(), false)?;
    write(dir, &format!("{stem}-key.pem"), &key.serialize_pem(), true)
}

/// Write `text` to `dir/file`; keys are readable by their owner only.
fn write(dir: &Path, file: &str, text: &str, private: bool) -> Result<(), String> {
    let path: PathBuf = dir.join(file);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    use std::io::Write;
    options
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // A key file that was already there keeps its old mode through `open`.
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pem::{KeyPair as Loaded, TrustBundle};
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn writes_a_usable_set_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure(dir.path()).unwrap());
        assert!(!ensure(dir.path()).unwrap(), "an existing set is kept");
        let server = Loaded::load(&dir.path().join("server.pem"), &dir.path().join("server-key.pem")).unwrap();
        assert_eq!(server.chain.len(), 1);
        TrustBundle::load(&dir.path().join("ca.pem")).unwrap();
        let client = std::fs::read(dir.path().join("client.pem")).unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&client).unwrap();
        let id = crate::connection::PeerIdentity::from_der(&der).unwrap();
        assert_eq!(id.spiffe_id, Some(client_id()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("client-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "keys are private");
        }
    }
}
