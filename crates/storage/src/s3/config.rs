//! What the S3 backend is configured with. Plain data, deserialized by the
//! binary's configuration tree; [`super::S3BlobStore::open`] checks it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where the blobs live in an S3-compatible object store (AWS S3, MinIO, Ceph
/// RGW, Garage, ...) and how to reach it.
///
/// Credentials left out are taken from the standard AWS environment variables
/// and credential chain (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, web identity, ECS task role, EC2 instance profile).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Base URL of the S3 API, e.g. `http://127.0.0.1:3900` or
    /// `https://minio.example.com`. Absent: AWS S3 in `region` (or
    /// `AWS_ENDPOINT` from the environment when no credentials are configured).
    /// Redirected clients fetch presigned URLs from this same address, so it
    /// must be reachable by them when `redirect` is enabled.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region that requests are signed for (Garage: its `s3_region`, `garage`
    /// by default). Absent: `AWS_REGION` or `AWS_DEFAULT_REGION` from the
    /// environment, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Bucket holding the blobs. Required; it must exist already.
    pub bucket: String,
    /// Key prefix inside the bucket (e.g. `registry/prod`), so that several
    /// registries or other data can share one bucket. Default: none, keys
    /// start at the bucket's root.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Access key id. Absent: the AWS environment and credential chain.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key; never logged. Required when `access_key_id` is set.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials, with `access_key_id` and
    /// `secret_access_key`; never logged.
    #[serde(default)]
    pub session_token: Option<String>,
    /// Address the bucket as `https://<bucket>.<endpoint host>/<key>` instead
    /// of `https://<endpoint host>/<bucket>/<key>`. Default: `false`
    /// (path-style, which every S3-compatible server understands).
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// Allow plain `http://`. An `http://` endpoint implies it. Default: `false`.
    #[serde(default)]
    pub allow_http: bool,
    /// Size of the parts large blobs are uploaded in, in MiB (5 to 5120).
    /// Each upload in flight buffers up to two parts in memory. Part sizes
    /// double every 1,000 parts, so blobs far larger than 10,000 parts (S3's
    /// limit) still fit. Default: 16.
    #[serde(default = "default_part_size_mib")]
    pub part_size_mib: u64,
    /// Answer blob downloads with a redirect to a presigned URL, so that the
    /// bytes flow from the object store straight to the client. Default: off.
    #[serde(default)]
    pub redirect: S3RedirectConfig,
}

/// Redirects of blob downloads to presigned object store URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3RedirectConfig {
    /// Answer `GET` of a blob with `307 Temporary Redirect` to a presigned
    /// URL once the repository's access has been checked. Clients must be
    /// able to reach `endpoint`. Default: `false`.
    pub enabled: bool,
    /// How long a presigned URL stays valid, in seconds (1 to 604800, S3's
    /// maximum of seven days). The download must start within this time; it
    /// may take longer to finish. Default: 600.
    pub expiry_secs: u64,
}

impl Default for S3RedirectConfig {
    fn default() -> Self {
        S3RedirectConfig {
            enabled: false,
            expiry_secs: 600,
        }
    }
}

pub(crate) const DEFAULT_PART_SIZE_MIB: u64 = 16;

fn default_part_size_mib() -> u64 {
    DEFAULT_PART_SIZE_MIB
}

impl Default for S3Config {
    /// Defaults for every field; `bucket` is empty and must be set.
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: None,
            bucket: String::new(),
            prefix: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            virtual_hosted_style: false,
            allow_http: false,
            part_size_mib: DEFAULT_PART_SIZE_MIB,
            redirect: S3RedirectConfig::default(),
        }
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("allow_http", &self.allow_http)
            .field("part_size_mib", &self.part_size_mib)
            .field("redirect", &self.redirect)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let config = S3Config {
            bucket: "b".into(),
            access_key_id: Some("GK123".into()),
            secret_access_key: Some("very-secret".into()),
            session_token: Some("token-secret".into()),
            ..S3Config::default()
        };
        let printed = format!("{config:?}");
        assert!(printed.contains("GK123"), "{printed}");
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(!printed.contains("token-secret"), "{printed}");
    }

    #[test]
    fn deserializes_with_defaults_and_refuses_unknown_keys() {
        let config: S3Config = serde_json::from_str(r#"{"bucket": "blobs"}"#).unwrap();
        assert_eq!(
            config,
            S3Config {
                bucket: "blobs".into(),
                ..S3Config::default()
            }
        );
        let config: S3Config = serde_json::from_str(
            r#"{"bucket": "b", "endpoint": "http://127.0.0.1:3900", "region": "garage",
                "prefix": "wharf", "part_size_mib": 32, "redirect": {"enabled": true}}"#,
        )
        .unwrap();
        assert_eq!(config.part_size_mib, 32);
        assert_eq!(
            config.redirect,
            S3RedirectConfig {
                enabled: true,
                expiry_secs: 600
            }
        );
        assert!(serde_json::from_str::<S3Config>(r#"{"bucket": "b", "bukket": "c"}"#).is_err());
        assert!(
            serde_json::from_str::<S3Config>(r#"{"bucket": "b", "redirect": {"expiry": 5}}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<S3Config>(r#"{}"#).is_err());
    }
}
