//! Secrets: the JWT signing key and the PII encryption key. From configuration when set
//! (base64 of 32 bytes; several API nodes must share them), otherwise from key files under
//! `data_dir/secrets`, created on first start with mode 0600. Never logged: `Secret`'s Debug
//! prints nothing of the value.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use serde::{Deserialize, Serialize};

/// A configuration value that must not be printed.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

pub const KEY_LEN: usize = 32;

/// 32 key bytes from `configured` (base64), or from `data_dir/secrets/<name>.key`, creating it.
pub fn key(configured: Option<&Secret>, data_dir: &Path, name: &str) -> Result<[u8; KEY_LEN], String> {
    if let Some(s) = configured {
        return decode(&s.0).map_err(|e| format!("{name}: {e}"));
    }
    let dir = data_dir.join("secrets");
    let path = dir.join(format!("{name}.key"));
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        return decode(text.trim()).map_err(|e| format!("{}: {e}", path.display()));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut bytes = [0u8; KEY_LEN];
    OsRng.fill_bytes(&mut bytes);
    write_private(&path, &B64.encode(bytes)).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes)
}

fn decode(text: &str) -> Result<[u8; KEY_LEN], String> {
    let bytes = B64.decode(text).map_err(|_| "not base64".to_string())?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("{} bytes, need {KEY_LEN}", b.len()))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_config_or_a_private_file_and_never_print() {
        let dir = std::env::temp_dir().join(format!("chepiao-secrets-{}", uuid::Uuid::new_v4().simple()));
        let a = key(None, &dir, "pii").unwrap();
        assert_eq!(key(None, &dir, "pii").unwrap(), a, "the file is reused");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("secrets/pii.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let configured = Secret(B64.encode([7u8; 32]));
        assert_eq!(key(Some(&configured), &dir, "pii").unwrap(), [7u8; 32]);
        assert!(key(Some(&Secret("short".into())), &dir, "pii").is_err());
        assert_eq!(format!("{configured:?}"), "Secret(<redacted>)");
        std::fs::remove_dir_all(&dir).ok();
    }
}
