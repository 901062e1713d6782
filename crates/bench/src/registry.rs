//! The distribution protocol as a client pushes and pulls, written once and
//! used against every server in the run.

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;

use crate::client::{Client, empty, full, resolve, streamed, with_query};
use crate::data::{Blob, PartsBody};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json";

/// How a blob is uploaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadMode {
    /// POST, then PUT with the whole body.
    Monolithic,
    /// POST, PATCHes of a fixed size with Content-Range, then PUT.
    Chunked(u64),
    /// POST, one PATCH without a length (chunked transfer encoding), then PUT.
    Streamed,
}

#[derive(Clone, Debug)]
pub struct Registry {
    pub client: Client,
    pub base: String,
}

impl Registry {
    async fn start_upload(&self, repo: &str) -> anyhow::Result<String> {
        let (headers, _) = self
            .client
            .expect(
                Method::POST,
                &format!("{}/v2/{repo}/blobs/uploads/", self.base),
                &[("content-length", "0")],
                empty(),
                StatusCode::ACCEPTED,
            )
            .await?;
        location(&self.base, &headers)
    }

    pub async fn blob_exists(&self, repo: &str, blob: &Blob) -> anyhow::Result<bool> {
        let url = format!("{}/v2/{repo}/blobs/{}", self.base, blob.digest);
        let r = self
            .client
            .request(Method::HEAD, &url, &[], empty())
            .await?;
        let status = r.status();
        let _ = r.into_body().collect().await;
        Ok(status == StatusCode::OK)
    }

    pub async fn push_blob(&self, repo: &str, blob: &Blob, mode: UploadMode) -> anyhow::Result<()> {
        let mut location = self.start_upload(repo).await?;
        let digest = blob.digest.to_string();
        match mode {
            UploadMode::Monolithic => {
                let body = PartsBody::new(blob.parts.clone()).boxed();
                self.client
                    .expect(
                        Method::PUT,
                        &with_query(&location, "digest", &digest),
                        &[("content-type", "application/octet-stream")],
                        body,
                        StatusCode::CREATED,
                    )
                    .await?;
                return Ok(());
            }
            UploadMode::Chunked(chunk) => {
                let mut start = 0;
                while start < blob.size {
                    let end = (start + chunk).min(blob.size);
                    let range = format!("{start}-{}", end - 1);
                    let body = PartsBody::new(blob.slice(start, end)).boxed();
                    let (headers, _) = self
                        .client
                        .expect(
                            Method::PATCH,
                            &location,
                            &[
                                ("content-range", &range),
                                ("content-type", "application/octet-stream"),
                            ],
                            body,
                            StatusCode::ACCEPTED,
                        )
                        .await?;
                    location = crate::registry::location(&self.base, &headers)?;
                    start = end;
                }
            }
            UploadMode::Streamed => {
                let body = streamed(futures_util::stream::iter(blob.parts.clone()));
                let (headers, _) = self
                    .client
                    .expect(
                        Method::PATCH,
                        &location,
                        &[("content-type", "application/octet-stream")],
                        body,
                        StatusCode::ACCEPTED,
                    )
                    .await?;
                location = crate::registry::location(&self.base, &headers)?;
            }
        }
        self.client
            .expect(
                Method::PUT,
                &with_query(&location, "digest", &digest),
                &[("content-length", "0")],
                empty(),
                StatusCode::CREATED,
            )
            .await?;
        Ok(())
    }

    /// Mounts a blob from another repository; true when the server mounted it.
    pub async fn mount(&self, repo: &str, from: &str, blob: &Blob) -> anyhow::Result<bool> {
        let url = format!(
            "{}/v2/{repo}/blobs/uploads/?mount={}&from={from}",
            self.base, blob.digest
        );
        let r = self
            .client
            .request(Method::POST, &url, &[("content-length", "0")], empty())
            .await?;
        let status = r.status();
        let _ = r.into_body().collect().await;
        Ok(status == StatusCode::CREATED)
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        body: &Bytes,
    ) -> anyhow::Result<()> {
        self.client
            .expect(
                Method::PUT,
                &format!("{}/v2/{repo}/manifests/{reference}", self.base),
                &[("content-type", OCI_MANIFEST)],
                full(body.clone()),
                StatusCode::CREATED,
            )
            .await?;
        Ok(())
    }

    /// A registry token for `scope` from wharf's token endpoint, signed in as
    /// this client; `None` from a registry without one (Distribution here).
    pub async fn token(&self, scope: &str) -> anyhow::Result<Option<String>> {
        let url = format!("{}/auth/token?service=wharf&scope={scope}", self.base);
        let response = self.client.request(Method::GET, &url, &[], empty()).await?;
        if response.status() != StatusCode::OK {
            return Ok(None);
        }
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await?
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        Ok(json["token"].as_str().map(str::to_owned))
    }

    /// The same registry, signing requests with a bearer token.
    pub fn with_token(&self, token: &str) -> anyhow::Result<Registry> {
        let value = http::HeaderValue::from_str(&format!("Bearer {token}"))?;
        Ok(Registry {
            client: self.client.with_authorization(Some(value)),
            base: self.base.clone(),
        })
    }

    /// The same registry without credentials.
    pub fn anonymous(&self) -> Registry {
        Registry {
            client: self.client.with_authorization(None),
            base: self.base.clone(),
        }
    }

    /// GETs a manifest and checks its bytes against `expected`.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        expected: &oci::Digest,
    ) -> anyhow::Result<()> {
        let (_, body) = self
            .client
            .expect(
                Method::GET,
                &format!("{}/v2/{repo}/manifests/{reference}", self.base),
                &[("accept", ACCEPT_MANIFESTS)],
                empty(),
                StatusCode::OK,
            )
            .await?;
        let actual = oci::Digest::compute(oci::DigestAlgorithm::Sha256, &body);
        anyhow::ensure!(
            &actual == expected,
            "manifest {repo}:{reference} has digest {actual}, expected {expected}"
        );
        Ok(())
    }

    pub fn blob_url(&self, repo: &str, blob: &Blob) -> String {
        format!("{}/v2/{repo}/blobs/{}", self.base, blob.digest)
    }

    /// Pushes config and layers (HEAD first, as clients do) and the manifest.
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        config: &Blob,
        layers: &[Blob],
    ) -> anyhow::Result<Bytes> {
        for blob in std::iter::once(config).chain(layers) {
            if !self.blob_exists(repo, blob).await? {
                self.push_blob(repo, blob, UploadMode::Monolithic).await?;
            }
        }
        let manifest = image_manifest(config, layers);
        self.put_manifest(repo, tag, &manifest).await?;
        Ok(manifest)
    }
}

pub fn image_manifest(config: &Blob, layers: &[Blob]) -> Bytes {
    let layers: Vec<_> = layers
        .iter()
        .map(|l| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l.digest.as_str(), "size": l.size}))
        .collect();
    Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest.as_str(), "size": config.size},
            "layers": layers,
        }))
        .expect("serializable"),
    )
}

pub fn location(base: &str, headers: &http::HeaderMap) -> anyhow::Result<String> {
    let l = headers
        .get("location")
        .ok_or_else(|| anyhow::anyhow!("response has no Location"))?
        .to_str()?;
    Ok(resolve(base, l))
}
