//! The credential file docker, podman, skopeo and buildah share:
//! `{"auths": {"<host:port>": {"auth": base64("user:password")}}}`.
//!
//! wharf reads and writes only its registry's entry under `auths`; every
//! other key (`credHelpers`, `credsStore`, other registries, whatever a
//! newer tool adds) is kept as it was. Writes go to a temporary file in the
//! same directory, created with mode 0600, which then replaces the file in
//! one rename, so a reader never sees half a file.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::{Map, Value};

use super::api::Credentials;

/// The file to use when `--authfile` (or `REGISTRY_AUTH_FILE`) is not
/// given: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`
/// (docker's file, which podman, skopeo and buildah read too).
pub fn default_path(env: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(dir) = set("DOCKER_CONFIG") {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    match set("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".docker").join("config.json")),
        None => bail!(
            "cannot find the credential file: HOME is not set; pass --authfile or set REGISTRY_AUTH_FILE"
        ),
    }
}

/// What the file holds for one registry.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    /// A user name and password.
    Credentials(Credentials),
    /// Nothing usable here: the credentials are kept by this credential
    /// helper (`credHelpers` or `credsStore`), which wharf does not call.
    Helper(String),
    Nothing,
}

/// A credential file, as read.
#[derive(Debug)]
pub struct AuthFile {
    path: PathBuf,
    doc: Map<String, Value>,
}

impl AuthFile {
    /// Reads `path`; a missing or empty file is an empty document.
    pub fn load(path: &Path) -> anyhow::Result<AuthFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        let doc = if text.trim().is_empty() {
            Map::new()
        } else {
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(doc)) => doc,
                Ok(_) => bail!("{} is not a JSON object", path.display()),
                Err(e) => bail!("{} is not valid JSON: {e}", path.display()),
            }
        };
        if doc.get("auths").is_some_and(|a| !a.is_object()) {
            bail!("{}: \"auths\" is not a JSON object", path.display());
        }
        Ok(AuthFile {
            path: path.to_owned(),
            doc,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn auths(&self) -> Option<&Map<String, Value>> {
        self.doc.get("auths").and_then(Value::as_object)
    }

    /// The keys under `auths` that name `key` (`host:port`): the key itself,
    /// and older spellings with a scheme or a path (`https://host:port/v1/`).
    fn matching_keys(&self, key: &str) -> Vec<String> {
        let Some(auths) = self.auths() else {
            return Vec::new();
        };
        let mut keys: Vec<String> = auths
            .keys()
            .filter(|k| *k != key && normalize_key(k) == key)
            .cloned()
            .collect();
        if auths.contains_key(key) {
            keys.insert(0, key.to_owned());
        }
        keys
    }

    /// The credentials stored for `key` (`host:port`).
    pub fn get(&self, key: &str) -> anyhow::Result<Stored> {
        let auths = self.auths();
        for k in self.matching_keys(key) {
            let Some(entry) = auths.and_then(|a| a.get(&k)) else {
                continue;
            };
            let Some(encoded) = entry.get("auth").and_then(Value::as_str) else {
                continue;
            };
            if encoded.is_empty() {
                continue;
            }
            return decode(encoded)
                .map(Stored::Credentials)
                .with_context(|| format!("{}: the entry for {k}", self.path.display()));
        }
        let helper = self
            .doc
            .get("credHelpers")
            .and_then(|h| h.get(key))
            .or_else(|| self.doc.get("credsStore"))
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty());
        Ok(match helper {
            Some(h) => Stored::Helper(h.to_owned()),
            None => Stored::Nothing,
        })
    }

    /// Stores credentials for `key`, replacing the entry (and any older
    /// spelling of it); other entries stay as they are.
    pub fn set(&mut self, key: &str, credentials: &Credentials) {
        for k in self.matching_keys(key) {
            self.remove_key(&k);
        }
        let auth = STANDARD.encode(format!("{}:{}", credentials.username, credentials.password));
        let mut entry = Map::new();
        entry.insert("auth".into(), Value::String(auth));
        let auths = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(auths) = auths {
            auths.insert(key.to_owned(), Value::Object(entry));
        }
    }

    /// Removes the entry for `key` (and older spellings of it); whether
    /// there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        let keys = self.matching_keys(key);
        for k in &keys {
            self.remove_key(k);
        }
        !keys.is_empty()
    }

    fn remove_key(&mut self, key: &str) {
        if let Some(Value::Object(auths)) = self.doc.get_mut("auths") {
            auths.remove(key);
        }
    }

    /// Writes the file atomically with mode 0600, creating its directory.
    /// A symbolic link is followed, so the file it points to is replaced
    /// and the link stays.
    pub fn save(&self) -> anyhow::Result<()> {
        let target = match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(&self.path)
                .with_context(|| format!("cannot follow the link {}", self.path.display()))?,
            _ => self.path.clone(),
        };
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut text = serde_json::to_vec_pretty(&Value::Object(self.doc.clone()))
            .context("cannot serialize the credential file")?;
        text.push(b'\n');
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config.json".into());
        let (tmp_path, mut tmp) = temp_file(&dir, &name)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        let written = tmp
            .write_all(&text)
            .and_then(|()| tmp.sync_all())
            .and_then(|()| std::fs::rename(&tmp_path, &target));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(e).with_context(|| format!("cannot write {}", target.display()));
        }
        // Make the rename durable; not every file system can sync a directory.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// `host:port` from a key that may carry a scheme or a path.
fn normalize_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// `user:password` from an entry's `auth`.
fn decode(encoded: &str) -> anyhow::Result<Credentials> {
    let bytes = STANDARD
        .decode(encoded.trim())
        .or_else(|_| STANDARD_NO_PAD.decode(encoded.trim()))
        .context("\"auth\" is not base64")?;
    let text = String::from_utf8(bytes).context("\"auth\" is not UTF-8")?;
    let Some((username, password)) = text.split_once(':') else {
        bail!("\"auth\" is not user:password");
    };
    Ok(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(unix)]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// A new file next to the target, readable by its owner only.
fn temp_file(dir: &Path, name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut attempt = 0u32;
    loop {
        let path = dir.join(format!(
            ".{name}.wharf-{}-{nanos}-{attempt}",
            std::process::id()
        ));
        match options.open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn default_paths() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            default_path(env(&[("DOCKER_CONFIG", "/d"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/d/config.json")
        );
        assert_eq!(
            default_path(env(&[("DOCKER_CONFIG", ""), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.docker/config.json")
        );
        assert!(default_path(env(&[])).is_err());
    }

    #[test]
    fn set_get_remove_keep_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/auth.json");
        let mut file = AuthFile::load(&path).unwrap();
        assert_eq!(file.get("r:5000").unwrap(), Stored::Nothing);
        file.set("r:5000", &creds("alice", "pa:ss"));
        file.save().unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["auths"]["r:5000"]["auth"],
            STANDARD.encode("alice:pa:ss")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // Foreign content survives an update and a removal.
        let foreign = serde_json::json!({
            "auths": {
                "other:1": {"auth": STANDARD.encode("bob:x")},
                "https://r:5000/v1/": {"auth": STANDARD.encode("old:y")},
            },
            "credHelpers": {"gcr.io": "gcloud"},
            "psFormat": "table",
        });
        std::fs::write(&path, foreign.to_string()).unwrap();
        let mut file = AuthFile::load(&path).unwrap();
        assert_eq!(
            file.get("r:5000").unwrap(),
            Stored::Credentials(creds("old", "y"))
        );
        file.set("r:5000", &creds("alice", "new"));
        file.save().unwrap();
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["credHelpers"], foreign["credHelpers"]);
        assert_eq!(json["psFormat"], "table");
        assert_eq!(json["auths"]["other:1"], foreign["auths"]["other:1"]);
        assert!(json["auths"].get("https://r:5000/v1/").is_none());
        let file = AuthFile::load(&path).unwrap();
        assert_eq!(
            file.get("r:5000").unwrap(),
            Stored::Credentials(creds("alice", "new"))
        );
        assert_eq!(file.get("gcr.io").unwrap(), Stored::Helper("gcloud".into()));

        let mut file = AuthFile::load(&path).unwrap();
        assert!(file.remove("r:5000"));
        assert!(!file.remove("r:5000"));
        file.save().unwrap();
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            json["auths"],
            serde_json::json!({"other:1": foreign["auths"]["other:1"]})
        );
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("auth.json")]);
    }

    #[test]
    fn refuses_to_overwrite_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(AuthFile::load(&path).is_err());
        std::fs::write(&path, r#"{"auths": []}"#).unwrap();
        assert!(AuthFile::load(&path).is_err());
        std::fs::write(&path, "").unwrap();
        assert!(AuthFile::load(&path).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_file_stays_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        std::fs::write(&real, "{}").unwrap();
        let link = dir.path().join("config.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut file = AuthFile::load(&link).unwrap();
        file.set("r:1", &creds("a", "b"));
        file.save().unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(std::fs::read_to_string(&real).unwrap().contains("auths"));
    }
}
