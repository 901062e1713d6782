//! Manifest push, pull (with content negotiation) and delete.

use auth::{Delete, Grant, Pull, Push};
use bytes::Bytes;
use metadata::{DeleteGuard, MetadataError, MissingReference, NewManifest, StoredManifest};
use oci::media_type::{self, essence};
use oci::{Digest, DigestAlgorithm, Manifest, ManifestKind, Reference, RepoName, Tag};

use crate::{Registry, RegistryError, Result, change};

/// Most distinct blobs and child manifests one manifest may reference. Real
/// images reference tens; the limit keeps one push from holding the metadata
/// store's write transaction for long.
const MAX_REFERENCES: usize = 10_000;

/// Platform served to clients that cannot read an index (they accept only
/// single-image manifest types), as Distribution does for old clients.
const DEFAULT_PLATFORM: (&str, &str) = ("linux", "amd64");

/// A manifest just stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// Every tag now pointing at the manifest because of this push.
    pub tags: Vec<Tag>,
}

/// The manifest media types a client accepts, from its `Accept` headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcceptedTypes {
    /// No `Accept` header, or a wildcard: anything goes.
    any: bool,
    types: Vec<String>,
}

impl AcceptedTypes {
    pub fn any() -> Self {
        AcceptedTypes {
            any: true,
            types: Vec::new(),
        }
    }

    /// From the values of every `Accept` header of a request (each may be a
    /// comma-separated list; parameters such as `q=` are ignored).
    pub fn from_headers<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let types: Vec<String> = values
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(essence)
            .filter(|t| !t.is_empty())
            .collect();
        let any = types.is_empty() || types.iter().any(|t| t == "*/*" || t == "application/*");
        AcceptedTypes { any, types }
    }

    pub fn accepts(&self, media_type: &str) -> bool {
        self.any || self.types.iter().any(|t| t == media_type)
    }
}

impl Registry {
    /// Stores a manifest pushed to `reference`, pointing the reference tag (if it
    /// is one) and `extra_tags` at it.
    pub async fn put_manifest(
        &self,
        grant: &Grant<Push>,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        extra_tags: &[Tag],
    ) -> Result<PushedManifest> {
        let limit = self.limits.max_manifest_bytes;
        if body.len() as u64 > limit {
            return Err(RegistryError::ManifestTooLarge { limit });
        }
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::compute(expected.algorithm(), &body);
                if &actual != expected {
                    return Err(RegistryError::DigestInvalid(format!(
                        "the manifest body has digest {actual}, not the {expected} in the URL"
                    )));
                }
                actual
            }
            Reference::Tag(_) => Digest::compute(DigestAlgorithm::Sha256, &body),
        };
        let manifest = Manifest::parse(&body, content_type)
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;

        let mut tags: Vec<Tag> = Vec::new();
        let reference_tag = match reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        for tag in reference_tag.into_iter().chain(extra_tags) {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        if tags.len() > self.limits.max_tags_per_push {
            return Err(RegistryError::TooManyTags(format!(
                "a push may set at most {} tags, this one sets {}",
                self.limits.max_tags_per_push,
                tags.len()
            )));
        }

        let subject = manifest.subject.as_ref().map(|s| s.digest.clone());
        let rules = self.immutability(grant.repository().project()).await?;
        let rules = rules.for_repository(grant.repository().name_in_project());
        let immutable_tags: Vec<Tag> = tags
            .iter()
            .filter(|t| rules.immutable(t.as_str()).is_some())
            .cloned()
            .collect();
        let new = NewManifest {
            repository: grant.repository().clone(),
            digest: digest.clone(),
            media_type: manifest.kind.media_type().to_owned(),
            body,
            subject: subject.clone(),
            artifact_type: manifest.referrer_artifact_type().map(str::to_owned),
            annotations: (!manifest.annotations.is_empty())
                .then(|| serde_json::to_string(&manifest.annotations))
                .transpose()
                .map_err(|e| RegistryError::Internal(Box::new(e)))?,
            blobs: distinct(manifest.required_blobs()),
            manifests: distinct(manifest.required_manifests()),
            tags,
            immutable_tags,
        };
        let references = new.blobs.len() + new.manifests.len();
        if references > MAX_REFERENCES {
            return Err(RegistryError::ManifestInvalid(format!(
                "the manifest references {references} distinct blobs and manifests; at most {MAX_REFERENCES} are accepted"
            )));
        }
        match self.meta.put_manifest(new, &change(grant)).await {
            Ok(outcome) => Ok(PushedManifest {
                digest,
                subject,
                tags: outcome.tags.into_iter().map(|t| t.tag).collect(),
            }),
            Err(MetadataError::MissingReferences(missing)) => Err(missing_references(missing)),
            Err(MetadataError::QuotaExceeded(q)) => Err(self.quota_refused(grant, q).await),
            Err(e) => Err(e.into()),
        }
    }

    /// The manifest `reference` names, in a type the client accepts. A digest
    /// names exact content, which is served whatever the `Accept` header says.
    pub async fn get_manifest(
        &self,
        grant: &Grant<Pull>,
        reference: &Reference,
        accepted: &AcceptedTypes,
    ) -> Result<StoredManifest> {
        let repo = grant.repository();
        let tag = match reference {
            Reference::Digest(digest) => {
                return match self.meta.manifest_by_digest(repo, digest).await? {
                    Some(m) => Ok(m),
                    None => Err(self
                        .manifest_miss(repo, format!("manifest {digest} is not in {repo}"))
                        .await?),
                };
            }
            Reference::Tag(tag) => tag,
        };
        let Some(manifest) = self.meta.manifest_by_tag(repo, tag).await? else {
            return Err(self
                .manifest_miss(repo, format!("tag {tag} is not in {repo}"))
                .await?);
        };
        if accepted.accepts(&manifest.media_type) {
            return Ok(manifest);
        }
        if let Some(child) = self.platform_child(repo, &manifest, accepted).await? {
            return Ok(child);
        }
        Err(RegistryError::ManifestUnknown(format!(
            "{repo}:{tag} is a {}, which the request's Accept header does not list",
            manifest.media_type
        )))
    }

    /// For a client that accepts only single-image manifests, the index's
    /// manifest for the default platform, if there is one it accepts.
    async fn platform_child(
        &self,
        repo: &RepoName,
        manifest: &StoredManifest,
        accepted: &AcceptedTypes,
    ) -> Result<Option<StoredManifest>> {
        let is_index =
            ManifestKind::from_media_type(&manifest.media_type).is_some_and(|k| k.is_index());
        if !is_index
            || !(accepted.accepts(media_type::DOCKER_MANIFEST_V2)
                || accepted.accepts(media_type::OCI_IMAGE_MANIFEST))
        {
            return Ok(None);
        }
        let Ok(index) = Manifest::parse(&manifest.body, Some(&manifest.media_type)) else {
            return Ok(None);
        };
        let child = index.manifests.iter().find(|d| {
            accepted.accepts(&d.media_type)
                && d.platform
                    .as_ref()
                    .is_some_and(|p| (p.os.as_str(), p.architecture.as_str()) == DEFAULT_PLATFORM)
        });
        match child {
            Some(d) => Ok(self.meta.manifest_by_digest(repo, &d.digest).await?),
            None => Ok(None),
        }
    }

    /// The error for a manifest that is not there: the repository may be unknown too.
    pub(crate) async fn manifest_miss(
        &self,
        repo: &RepoName,
        message: String,
    ) -> Result<RegistryError> {
        if self.meta.repository_exists(repo).await? {
            Ok(RegistryError::ManifestUnknown(message))
        } else {
            Ok(RegistryError::NameUnknown(repo.clone()))
        }
    }

    /// Deletes a tag (the manifest stays) or a manifest with all its tags.
    pub async fn delete_manifest(
        &self,
        grant: &Grant<Delete>,
        reference: &Reference,
    ) -> Result<()> {
        let repo = grant.repository();
        let rules = self.immutability(repo.project()).await?;
        let rules = rules.for_repository(repo.name_in_project());
        let result = match reference {
            Reference::Tag(tag) if rules.immutable(tag.as_str()).is_some() => {
                Err(MetadataError::TagImmutable {
                    tag: tag.as_str().to_owned(),
                })
            }
            Reference::Tag(tag) => self.meta.delete_tag(repo, tag, &change(grant)).await,
            Reference::Digest(digest) => {
                let immutable = |tag: &str| rules.immutable(tag).is_some();
                let guard = DeleteGuard {
                    immutable: &immutable,
                    expected_tags: None,
                };
                self.meta
                    .delete_manifest(repo, digest, &guard, &change(grant))
                    .await
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(MetadataError::RepositoryUnknown) => Err(RegistryError::NameUnknown(repo.clone())),
            Err(MetadataError::TagUnknown) => Err(RegistryError::ManifestUnknown(format!(
                "tag {reference} is not in {repo}"
            ))),
            Err(MetadataError::ManifestUnknown(d)) => Err(RegistryError::ManifestUnknown(format!(
                "manifest {d} is not in {repo}"
            ))),
            Err(e @ MetadataError::ManifestInUse { .. }) => {
                Err(RegistryError::InUse(e.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Each referenced digest once, with the size of its first descriptor (a
/// second descriptor of the same digest with another size is caught by the
/// size check against the stored content).
fn distinct<'a>(descriptors: impl Iterator<Item = &'a oci::Descriptor>) -> Vec<(Digest, u64)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for d in descriptors {
        if seen.insert(d.digest.clone()) {
            out.push((d.digest.clone(), d.size));
        }
    }
    out
}

/// Absent references are `MANIFEST_BLOB_UNKNOWN`; when everything is present
/// but a descriptor's size is wrong, the manifest itself is invalid.
fn missing_references(missing: Vec<MissingReference>) -> RegistryError {
    if missing
        .iter()
        .any(|m| !matches!(m, MissingReference::SizeMismatch { .. }))
    {
        return RegistryError::ManifestBlobUnknown(missing);
    }
    let details: Vec<String> = missing
        .iter()
        .filter_map(|m| match m {
            MissingReference::SizeMismatch {
                digest,
                declared,
                actual,
            } => Some(format!(
                "descriptor for {digest} says {declared} bytes, but the content has {actual}"
            )),
            _ => None,
        })
        .collect();
    RegistryError::ManifestInvalid(details.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        let a = AcceptedTypes::from_headers([
            "application/vnd.oci.image.manifest.v1+json; q=0.5, application/vnd.docker.distribution.manifest.v2+json",
        ]);
        assert!(a.accepts(media_type::OCI_IMAGE_MANIFEST));
        assert!(a.accepts(media_type::DOCKER_MANIFEST_V2));
        assert!(!a.accepts(media_type::OCI_IMAGE_INDEX));
        assert!(AcceptedTypes::from_headers([]).accepts(media_type::OCI_IMAGE_INDEX));
        assert!(AcceptedTypes::from_headers(["*/*"]).accepts(media_type::OCI_IMAGE_INDEX));
        assert!(AcceptedTypes::from_headers(["text/html", "application/*"]).accepts("x"));
    }
}
