//! Promotion: an artifact copied from one repository to another (in the same
//! project or another) and tagged there, server-side, without copying a
//! byte of its blobs: they are linked to the target repository, as a
//! cross-repository mount does.
//!
//! What goes: the manifest, everything it references (an index's child
//! manifests, every config and layer), and its referrers (signatures, SBOMs,
//! attestations), theirs in turn, as found in the source repository. Each
//! manifest is stored in the target through the same path as a client's
//! push: the target's quota and immutable tags apply, and each makes its
//! `artifact.pushed` event. Children go before their index and a subject
//! before its referrers, so the target never holds a manifest whose
//! references are missing.

use std::collections::HashSet;

use auth::{Grant, Pull, Push};
use oci::{Digest, Manifest, Reference, Tag};

use crate::{MountOutcome, Registry, RegistryError, Result};

/// Manifests one promotion may copy (the artifact, its children and its
/// referrers), so that a request's work is bounded.
const MAX_PROMOTED_MANIFESTS: usize = 1000;

/// Referrers read per page of the source's referrers list.
const REFERRER_PAGE: u32 = 100;

/// What a promotion did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promoted {
    /// The promoted artifact (the same digest in both repositories).
    pub digest: Digest,
    pub media_type: String,
    /// Manifests stored in the target: the artifact, its children and referrers.
    pub manifests: usize,
    /// Of them, referrers (signatures, SBOMs...).
    pub referrers: usize,
    /// Blobs linked to the target (none copied).
    pub blobs: usize,
}

/// A manifest of the source, in the order it is stored in the target.
struct Planned {
    digest: Digest,
    media_type: String,
    body: bytes::Bytes,
    blobs: Vec<Digest>,
    referrer: bool,
}

impl Registry {
    /// Copies the artifact `reference` names in `from`'s repository to
    /// `to`'s, and points `tag` (if given) at it there.
    pub async fn promote(
        &self,
        from: &Grant<Pull>,
        reference: &Reference,
        to: &Grant<Push>,
        tag: Option<&Tag>,
    ) -> Result<Promoted> {
        let source = from.repository();
        let root = match reference {
            Reference::Digest(d) => self.meta.manifest_by_digest(source, d).await?,
            Reference::Tag(t) => self.meta.manifest_by_tag(source, t).await?,
        };
        let Some(root) = root else {
            return Err(self
                .manifest_miss(source, format!("{reference} is not in {source}"))
                .await?);
        };

        let mut plan = Plan {
            source,
            reference,
            seen: HashSet::new(),
            manifests: Vec::new(),
        };
        self.plan_tree(&mut plan, root.digest.clone(), false)
            .await?;
        // Referrers of every manifest planned so far, theirs in turn.
        let mut next = 0;
        while next < plan.manifests.len() {
            let subject = plan.manifests[next].digest.clone();
            next += 1;
            let mut after: Option<Digest> = None;
            loop {
                let page = self
                    .meta
                    .referrers(source, &subject, None, after.as_ref(), REFERRER_PAGE)
                    .await?;
                for r in &page {
                    self.plan_tree(&mut plan, r.digest.clone(), true).await?;
                }
                if page.len() < REFERRER_PAGE as usize {
                    break;
                }
                after = page.last().map(|r| r.digest.clone());
            }
        }
        let plan = plan.manifests;

        // Blobs first: mounted from the source (linked, never copied), as a
        // client's cross-repository mount is; `to` may pull from `source`.
        let mut blobs: Vec<Digest> = plan.iter().flat_map(|p| p.blobs.iter().cloned()).collect();
        blobs.sort();
        blobs.dedup();
        for digest in &blobs {
            if let MountOutcome::NotMounted = self.mount_blob(to, digest, Some(source)).await? {
                return Err(RegistryError::BlobUnknown(digest.clone()));
            }
        }
        let referrers = plan.iter().filter(|p| p.referrer).count();
        let manifests = plan.len();
        let media_type = root.media_type.clone();
        for p in plan {
            let tags: Vec<Tag> = if p.digest == root.digest {
                tag.cloned().into_iter().collect()
            } else {
                Vec::new()
            };
            self.put_manifest(
                to,
                &Reference::Digest(p.digest.clone()),
                Some(&p.media_type),
                p.body,
                &tags,
            )
            .await?;
        }
        Ok(Promoted {
            digest: root.digest,
            media_type,
            manifests,
            referrers,
            blobs: blobs.len(),
        })
    }

    /// Adds `digest` and the manifests it references (children first) to
    /// `plan`, unless planned already.
    async fn plan_tree(&self, plan: &mut Plan<'_>, digest: Digest, referrer: bool) -> Result<()> {
        // (manifest, its children already on the stack)
        let mut stack: Vec<(Digest, Option<Planned>)> = vec![(digest, None)];
        while let Some((digest, planned)) = stack.pop() {
            if let Some(planned) = planned {
                plan.manifests.push(planned);
                continue;
            }
            if !plan.seen.insert(digest.clone()) {
                continue;
            }
            if plan.seen.len() > MAX_PROMOTED_MANIFESTS {
                return Err(RegistryError::InvalidRequest(format!(
                    "{} in {} comes with more than {MAX_PROMOTED_MANIFESTS} manifests (children and referrers); a promotion copies at most that many",
                    plan.reference, plan.source
                )));
            }
            let stored = self
                .meta
                .manifest_by_digest(plan.source, &digest)
                .await?
                .ok_or_else(|| {
                    RegistryError::ManifestUnknown(format!(
                        "manifest {digest} is not in {}",
                        plan.source
                    ))
                })?;
            let parsed = Manifest::parse(&stored.body, Some(&stored.media_type))
                .map_err(|e| RegistryError::ManifestInvalid(format!("{digest}: {e}")))?;
            let children: Vec<Digest> = parsed
                .required_manifests()
                .map(|d| d.digest.clone())
                .collect();
            let planned = Planned {
                blobs: parsed.required_blobs().map(|d| d.digest.clone()).collect(),
                digest: digest.clone(),
                media_type: stored.media_type,
                body: stored.body,
                referrer,
            };
            stack.push((digest, Some(planned)));
            stack.extend(children.into_iter().map(|c| (c, None)));
        }
        Ok(())
    }
}

/// What a promotion copies, found so far.
struct Plan<'a> {
    source: &'a oci::RepoName,
    reference: &'a Reference,
    seen: HashSet<Digest>,
    manifests: Vec<Planned>,
}
