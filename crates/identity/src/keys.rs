//! The token signing keys: stored in the metadata database so that every
//! node signs and verifies with the same ones, and held in memory as a
//! [`KeyRing`] so that verifying a token needs no I/O.
//!
//! Rotation stores a new key and retires the others; a retired key keeps
//! verifying until every token it signed has expired (the refresh token
//! lifetime), so nobody is logged out by a rotation. Other nodes pick the new
//! key up within a minute, or at once when they meet a token signed with it.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use auth::token::{KeyRing, SigningKey, TokenError};
use metadata::MetadataError;
use metadata::identity::{IdentityStore, StoredKey};
use serde::de::DeserializeOwned;

/// A node reloads keys for an unknown key id at most this often.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(1);

pub struct Keys {
    store: Arc<dyn IdentityStore>,
    ring: RwLock<Arc<KeyRing>>,
    /// How long a retired key keeps verifying.
    keep_retired: Duration,
    last_reload: Mutex<Instant>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("signing", &self.ring().signing_key_id())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn to_stored(key: &SigningKey, at_ms: i64) -> StoredKey {
    StoredKey {
        id: key.id().to_owned(),
        secret: key.secret().to_vec(),
        created_at_ms: at_ms,
        retired_at_ms: None,
    }
}

/// The ring from stored keys (newest first): the newest unretired key signs,
/// keys retired within `keep_retired` verify.
fn ring_from(keys: &[StoredKey], keep_retired: Duration) -> Option<KeyRing> {
    let signing = keys
        .iter()
        .find(|k| k.retired_at_ms.is_none())
        .or_else(|| keys.first())?;
    let oldest = now_ms() - keep_retired.as_millis() as i64;
    let retired = keys
        .iter()
        .filter(|k| k.id != signing.id && k.retired_at_ms.is_none_or(|r| r >= oldest))
        .map(|k| SigningKey::new(k.id.clone(), k.secret.clone()))
        .collect();
    Some(KeyRing::new(
        SigningKey::new(signing.id.clone(), signing.secret.clone()),
        retired,
    ))
}

impl Keys {
    /// Loads the keys, creating the first one if the database has none.
    pub async fn load(
        store: Arc<dyn IdentityStore>,
        keep_retired: Duration,
    ) -> Result<Self, MetadataError> {
        let candidate = to_stored(&SigningKey::generate(), now_ms());
        let keys = store.ensure_signing_key(&candidate).await?;
        let ring = ring_from(&keys, keep_retired)
            .ok_or_else(|| MetadataError::Backend("no token signing key was stored".into()))?;
        Ok(Keys {
            store,
            ring: RwLock::new(Arc::new(ring)),
            keep_retired,
            last_reload: Mutex::new(Instant::now()),
        })
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().expect("key ring lock").clone()
    }

    /// Reads the keys again (another node may have rotated them).
    pub async fn reload(&self) -> Result<(), MetadataError> {
        *self.last_reload.lock().expect("reload lock") = Instant::now();
        let keys = self.store.signing_keys().await?;
        if let Some(ring) = ring_from(&keys, self.keep_retired) {
            *self.ring.write().expect("key ring lock") = Arc::new(ring);
        }
        Ok(())
    }

    /// Signs with a new key from now on; tokens signed before stay valid.
    /// Returns the new key's id.
    pub async fn rotate(&self) -> Result<String, MetadataError> {
        let key = SigningKey::generate();
        let at = now_ms();
        self.store
            .rotate_signing_key(&to_stored(&key, at), at)
            .await?;
        self.reload().await?;
        Ok(key.id().to_owned())
    }

    /// Verifies a token's signature, reloading the keys first if it names a
    /// key this node has not seen yet (rotated by another node).
    pub async fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, TokenError> {
        match self.ring().verify(token) {
            Err(TokenError::UnknownKey) => {
                let due =
                    self.last_reload.lock().expect("reload lock").elapsed() >= RELOAD_AT_MOST_EVERY;
                if due && self.reload().await.is_ok() {
                    self.ring().verify(token)
                } else {
                    Err(TokenError::UnknownKey)
                }
            }
            other => other,
        }
    }
}
