//! A throwaway CA and server certificate for the peers that require TLS, made by the test
//! (rcgen) so no real certificate or system store is involved.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// The name the server certificate is issued for, besides 127.0.0.1.
pub const SERVER_NAME: &str = "db.staging.internal";

/// PEM files of one CA and a server certificate it signed.
pub struct TestCa {
    /// The CA certificate (what `sslrootcert` / `caFile` names).
    pub ca: PathBuf,
    /// The server certificate and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A CA named `name` and a server certificate for `SERVER_NAME` and 127.0.0.1, written
    /// into `dir`.
    pub fn create(dir: &Path, name: &str) -> TestCa {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("latchkey test CA {name}"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let mut server = CertificateParams::new(vec![SERVER_NAME.to_string(), "127.0.0.1".into()])
            .expect("server params");
        server
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        let key = KeyPair::generate().expect("server key");
        let cert = server.signed_by(&key, &ca).expect("server certificate");
        let out = TestCa {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}-server.crt")),
            key: dir.join(format!("{name}-server.key")),
        };
        std::fs::write(&out.ca, ca.pem()).expect("write CA");
        std::fs::write(&out.cert, cert.pem()).expect("write certificate");
        std::fs::write(&out.key, key.serialize_pem()).expect("write key");
        out
    }
}
