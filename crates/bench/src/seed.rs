//! A seeded registry for the lifecycle group: a wharf data directory holding
//! a million blobs and a hundred thousand manifests (at full size) with a
//! known amount of garbage, written before wharf starts.
//!
//! Why the seeder writes rows and files itself instead of pushing: a million
//! blobs pushed through the registry protocol take hours on the bench
//! machine, and the group measures collection and retention, not pushes. So
//! the schema is wharf's own (the metadata crate creates it), and the seeder
//! writes the rows a push writes (`crates/metadata/src/sql/blobs.rs`,
//! `manifests.rs`, `common.rs`): `blobs`, `repository_blobs` with `refs`
//! counting the manifests of the repository that reference the blob,
//! `manifest_contents`, `manifest_references`, `manifests`, `tags`,
//! `project_usage` and the `events` outbox; a deleted manifest leaves what a
//! client's DELETE leaves (its contents, its links with `refs` lowered and
//! `linked_at` reset). Every blob is a file whose bytes match its digest.
//! Not written: the audit log and pull records, which no lifecycle job reads.
//! The group then checks the seed through wharf: a dry-run collection must
//! find exactly the garbage planned here, and seeded images must pull, so a
//! schema change the seeder does not follow fails loudly.
//!
//! The shape: team projects of repositories whose images take layers from
//! a registry-wide pool and a per-project pool plus layers of their own; some
//! indexes of two platform images; tags on most images, some untagged; and
//! garbage older than the grace period: blobs no repository links (a tenth),
//! layers of pushes that never sent their manifest, and deleted manifests
//! (orphaned contents, stale links). A retention project holds builds tagged
//! `build-N` and `v1.M.P`, two tags each.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use oci::{Digest, DigestAlgorithm};
use serde_json::json;
use sqlx::query_builder::Separated;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};

use crate::data::Rng;
use crate::registry::OCI_MANIFEST;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DAY_MS: i64 = 86_400_000;
/// Who made the seeded pushes: the bench's administrator.
const ACTOR: &str = "admin";
/// The project whose tags retention is measured over.
pub const RETENTION_PROJECT: &str = "ci";
const TEAMS: [&str; 8] = [
    "web", "payments", "search", "data", "ml", "infra", "mobile", "security",
];
/// Minor versions in the retention project have this many patches.
const PATCHES_PER_MINOR: usize = 20;

/// How big a registry to seed.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Blobs, each a row and a file.
    pub blobs: usize,
    /// Manifest contents, held by a repository or orphaned.
    pub manifests: usize,
    /// Tags in the retention project, two per artifact.
    pub retention_tags: usize,
    pub teams: usize,
    pub repositories_per_team: usize,
    pub retention_repositories: usize,
    /// Layers any project's images may share (a distribution's base layers).
    pub global_pool: usize,
    /// Layers the images of one project share.
    pub project_pool: usize,
}

impl Shape {
    pub fn full() -> Self {
        Shape {
            blobs: 1_000_000,
            manifests: 100_000,
            retention_tags: 100_000,
            teams: 8,
            repositories_per_team: 25,
            retention_repositories: 20,
            global_pool: 40,
            project_pool: 250,
        }
    }

    pub fn quick() -> Self {
        Shape {
            blobs: 10_000,
            manifests: 1_000,
            retention_tags: 1_000,
            teams: 2,
            repositories_per_team: 5,
            retention_repositories: 4,
            global_pool: 4,
            project_pool: 10,
        }
    }
}

/// What a collection must find in the seeded registry, as its report counts it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Garbage {
    pub stale_links: u64,
    pub manifests: u64,
    pub manifest_bytes: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

/// The retention project and what its policy must decide.
#[derive(Clone, Debug)]
pub struct RetentionSeed {
    pub repositories: usize,
    pub artifacts: usize,
    pub tags: usize,
    pub would_delete: usize,
    /// Keeps the 10 newest builds of each repository and the 3 highest
    /// patches of each minor version.
    pub policy: serde_json::Value,
}

/// A seeded manifest to pull, with the blobs it references.
#[derive(Clone, Debug)]
pub struct Sample {
    pub repository: String,
    /// A tag, or the digest for an index's platform image.
    pub reference: String,
    pub digest: Digest,
    pub blobs: Vec<Digest>,
}

#[derive(Debug)]
pub struct Seeded {
    pub blobs: usize,
    pub manifests: usize,
    pub repositories: usize,
    pub tags: usize,
    pub garbage: Garbage,
    /// Of `garbage.blobs`, those no repository links at all.
    pub unlinked_blobs: u64,
    pub retention: RetentionSeed,
    pub samples: Vec<Sample>,
    /// A blob only a stale link holds: readable in its repository before a
    /// collection, gone after it.
    pub stale_blob: (String, Digest),
}

struct Repository {
    name: String,
    project: usize,
    created_at: i64,
}

/// A manifest as the seeder plans it; blob and manifest numbers index the plan.
struct Manifest {
    repository: u32,
    config: Option<u32>,
    layers: Vec<u32>,
    /// An index's platform manifests.
    children: Vec<u32>,
    tags: Vec<String>,
    pushed_at: i64,
    /// Deleted by a client: its contents stay, orphaned.
    deleted_at: Option<i64>,
    digest: Option<Digest>,
    body: Vec<u8>,
}

impl Manifest {
    fn blobs(&self) -> impl Iterator<Item = u32> + '_ {
        self.config.into_iter().chain(self.layers.iter().copied())
    }

    fn media_type(&self) -> &'static str {
        if self.config.is_some() {
            OCI_MANIFEST
        } else {
            OCI_INDEX
        }
    }
}

/// A blob linked to a repository.
#[derive(Clone, Copy)]
struct Link {
    /// Manifests of the repository referencing it.
    refs: u32,
    linked_at: i64,
    /// When its last referencing manifest was deleted.
    released_at: i64,
}

impl Link {
    /// `linked_at` as the store keeps it: a link that lost its last
    /// manifest counts from then.
    fn stored_linked_at(&self) -> i64 {
        if self.refs == 0 && self.released_at > 0 {
            self.released_at
        } else {
            self.linked_at
        }
    }
}

struct Plan {
    projects: Vec<String>,
    repositories: Vec<Repository>,
    manifests: Vec<Manifest>,
    /// Blob numbers `configs.0..configs.1` are image configs; the rest layers.
    configs: (u32, u32),
    /// Upload times of the blobs no repository links.
    unlinked_at: HashMap<u32, i64>,
    links: HashMap<(u32, u32), Link>,
    /// The first abandoned upload (a stale link only).
    abandoned: (u32, u32),
    retention_per_repository: usize,
}

/// Seeds `data_dir` (which wharf has not used yet) with a registry of `shape`.
pub async fn seed(data_dir: &Path, shape: &Shape) -> anyhow::Result<Seeded> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let now = now.as_millis() as i64;
    let database = data_dir.join("wharf.db");
    // wharf's own schema, migrations applied.
    let store = metadata::SqliteMetaStore::open(&metadata::SqliteOptions {
        path: database.clone(),
        readers: 1,
        fsync_every_commit: false,
    })
    .await
    .context("creating the schema")?;
    store.close().await;

    let mut plan = plan(shape, now);
    let blob_root = data_dir.join("blobs");
    let (configs, count) = (plan.configs, shape.blobs);
    let blobs = tokio::task::spawn_blocking(move || {
        write_blobs(&blob_root, count, |b| b >= configs.0 && b < configs.1)
    })
    .await??;
    write_manifest_bodies(&mut plan, &blobs);
    let seeded = expectations(&plan, &blobs, shape);
    insert_rows(&database, &plan, &blobs).await?;
    // Nothing of the seed may still be on its way to the disk while the
    // group measures.
    std::process::Command::new("sync").status()?;
    Ok(seeded)
}

/// Decides the registry's shape: projects, repositories, manifests and which
/// blobs each references, and the garbage.
fn plan(shape: &Shape, now: i64) -> Plan {
    let mut rng = Rng::new(2026);
    // Everything happened between 60 days and a day ago.
    let (start, end) = (now - 60 * DAY_MS, now - DAY_MS);
    let at = |rng: &mut Rng| start + rng.below((end - start) as u64) as i64;
    let mut projects: Vec<String> = TEAMS[..shape.teams]
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
    projects.push(RETENTION_PROJECT.to_owned());
    let retention_project = projects.len() - 1;
    let mut repositories = Vec::new();
    for (p, team) in projects.iter().enumerate().take(shape.teams) {
        for r in 0..shape.repositories_per_team {
            // Some repositories nest, as `team/tools/name` does.
            let name = if r % 5 == 4 {
                format!("{team}/tools/service-{r}")
            } else {
                format!("{team}/service-{r}")
            };
            repositories.push(Repository {
                name,
                project: p,
                created_at: start,
            });
        }
    }
    let team_repositories = repositories.len() as u32;
    for r in 0..shape.retention_repositories {
        repositories.push(Repository {
            name: format!("{RETENTION_PROJECT}/app-{r}"),
            project: retention_project,
            created_at: start,
        });
    }

    // Blob numbers: pools, then configs, then layers of one image, then
    // abandoned uploads, then blobs no repository links.
    let retention_images = shape.retention_tags / 2;
    let team_manifests = shape.manifests - retention_images;
    let deleted = team_manifests * 4 / 100;
    let indexes = team_manifests * 4 / 100;
    let untagged = team_manifests * 6 / 100;
    let team_images = team_manifests - indexes;
    let images = team_images + retention_images;
    let unlinked = shape.blobs / 10;
    let abandoned = shape.blobs / 200;
    let pools = shape.global_pool + projects.len() * shape.project_pool;
    let own_layers = shape.blobs - unlinked - abandoned - pools - images;
    let global_pool = 0..shape.global_pool as u32;
    let project_pool = |p: usize| {
        let first = (shape.global_pool + p * shape.project_pool) as u32;
        first..first + shape.project_pool as u32
    };
    let configs = (pools as u32, (pools + images) as u32);
    let mut next_config = configs.0;
    let mut next_layer = configs.1;

    // Retention images take 3-7 layers of their own; team images share the
    // rest, about evenly.
    let retention_own: Vec<u32> = (0..retention_images)
        .map(|_| 3 + rng.below(5) as u32)
        .collect();
    let team_own_total = own_layers - retention_own.iter().sum::<u32>() as usize;
    let team_own: Vec<u32> = (0..team_images)
        .map(|i| {
            let even = team_own_total / team_images;
            let extra = usize::from(i < team_own_total % team_images);
            // Pairs of images vary by the same amount in opposite directions.
            let swing = (i / 2 % 4).min(even.saturating_sub(1));
            let own = if i % 2 == 0 && i + 1 < team_images {
                even + swing
            } else if i % 2 == 1 {
                even - swing
            } else {
                even
            };
            (own + extra) as u32
        })
        .collect();
    let mut team_own = team_own.into_iter();

    let mut manifests: Vec<Manifest> = Vec::with_capacity(shape.manifests);
    let mut image = |rng: &mut Rng, repository: u32, own: u32, pushed_at: i64| -> Manifest {
        let project = repositories[repository as usize].project;
        let mut layers = vec![global_pool.start + rng.below(global_pool.len() as u64) as u32];
        let pool = project_pool(project);
        let first = pool.start + rng.below(pool.len() as u64) as u32;
        let second = pool.start + (first - pool.start + 1) % pool.len() as u32;
        layers.extend([first, second]);
        layers.extend(next_layer..next_layer + own);
        next_layer += own;
        let config = next_config;
        next_config += 1;
        Manifest {
            repository,
            config: Some(config),
            layers,
            children: Vec::new(),
            tags: Vec::new(),
            pushed_at,
            deleted_at: None,
            digest: None,
            body: Vec::new(),
        }
    };

    // Team projects: tagged images, untagged ones, deleted ones, indexes of
    // two platform images; in random repositories at random times.
    let mut kinds: Vec<u8> = Vec::new();
    kinds.extend(std::iter::repeat_n(0u8, deleted));
    kinds.extend(std::iter::repeat_n(1u8, untagged));
    kinds.extend(std::iter::repeat_n(2u8, indexes));
    let tagged = team_images - deleted - untagged - 2 * indexes;
    kinds.extend(std::iter::repeat_n(3u8, tagged));
    for kind in kinds {
        let repository = rng.below(u64::from(team_repositories)) as u32;
        let pushed_at = at(&mut rng);
        match kind {
            2 => {
                let mut children = Vec::new();
                for k in 0..2 {
                    let own = team_own.next().expect("planned");
                    manifests.push(image(&mut rng, repository, own, pushed_at - 2 + k));
                    children.push(manifests.len() as u32 - 1);
                }
                manifests.push(Manifest {
                    repository,
                    config: None,
                    layers: Vec::new(),
                    children,
                    tags: Vec::new(),
                    pushed_at,
                    deleted_at: None,
                    digest: None,
                    body: Vec::new(),
                });
            }
            _ => {
                let own = team_own.next().expect("planned");
                let mut m = image(&mut rng, repository, own, pushed_at);
                if kind == 0 {
                    m.deleted_at = Some((pushed_at + DAY_MS).min(end));
                }
                manifests.push(m);
            }
        }
    }
    // Tags in push order within each repository; the newest tagged image
    // is also `latest`.
    let mut order: Vec<usize> = (0..manifests.len()).collect();
    order.sort_by_key(|&m| (manifests[m].repository, manifests[m].pushed_at, m));
    let is_child: std::collections::HashSet<u32> = manifests
        .iter()
        .flat_map(|m| m.children.iter().copied())
        .collect();
    let mut latest: HashMap<u32, usize> = HashMap::new();
    let mut untagged_left = untagged;
    for (k, &m) in order.iter().enumerate() {
        let manifest = &mut manifests[m];
        if manifest.deleted_at.is_some() || is_child.contains(&(m as u32)) {
            continue;
        }
        if manifest.config.is_none() {
            manifest.tags.push(format!("multi-{k}"));
        } else if untagged_left > 0 && k % 7 == 3 {
            untagged_left -= 1;
        } else {
            manifest.tags.push(format!("r{k}"));
            latest.insert(manifest.repository, m);
        }
    }
    // Untagged images the spacing above did not reach take the newest tags
    // away, oldest first, so the count is exact.
    for &m in &order {
        if untagged_left == 0 {
            break;
        }
        let manifest = &mut manifests[m];
        if manifest.config.is_some()
            && !manifest.tags.is_empty()
            && latest.get(&manifest.repository) != Some(&m)
        {
            manifest.tags.clear();
            untagged_left -= 1;
        }
    }
    for (_, m) in latest {
        manifests[m].tags.push("latest".to_owned());
    }

    // The retention project: builds in push order, two tags each.
    let retention_per_repository = retention_images / shape.retention_repositories;
    let step = (end - start) / retention_per_repository.max(1) as i64;
    let mut retention_own = retention_own.into_iter();
    for r in 0..shape.retention_repositories {
        let repository = team_repositories + r as u32;
        for n in 0..retention_per_repository {
            let own = retention_own.next().expect("planned");
            let mut m = image(
                &mut rng,
                repository,
                own,
                start + n as i64 * step + r as i64,
            );
            m.tags = vec![
                format!("build-{n}"),
                format!("v1.{}.{}", n / PATCHES_PER_MINOR, n % PATCHES_PER_MINOR),
            ];
            manifests.push(m);
        }
    }
    // Rounding left a few retention images unplanned: team layers make up for them.
    for own in retention_own {
        let repository = rng.below(u64::from(team_repositories)) as u32;
        let pushed_at = at(&mut rng);
        let mut m = image(&mut rng, repository, own, pushed_at);
        m.tags = vec![format!("extra-{}", manifests.len())];
        manifests.push(m);
    }
    debug_assert_eq!(manifests.len(), shape.manifests);
    debug_assert_eq!(next_config, configs.1);
    debug_assert_eq!(
        next_layer as usize,
        shape.blobs - unlinked - abandoned,
        "layers planned"
    );

    // Links, with `refs` as pushes and deletes leave them.
    let mut links: HashMap<(u32, u32), Link> = HashMap::new();
    for m in &manifests {
        for blob in m.blobs() {
            let link = links.entry((m.repository, blob)).or_insert(Link {
                refs: 0,
                linked_at: m.pushed_at - 1000,
                released_at: 0,
            });
            link.linked_at = link.linked_at.min(m.pushed_at - 1000);
            match m.deleted_at {
                None => link.refs += 1,
                Some(deleted_at) => link.released_at = link.released_at.max(deleted_at),
            }
        }
    }
    // Pushes that never sent their manifest: a layer of their own, and now
    // and then one mounted from another project's pool.
    let first_abandoned = next_layer;
    let mut abandoned_link = (0, first_abandoned);
    for (k, blob) in (next_layer..next_layer + abandoned as u32).enumerate() {
        let repository = rng.below(u64::from(team_repositories)) as u32;
        let t = at(&mut rng);
        links.insert(
            (repository, blob),
            Link {
                refs: 0,
                linked_at: t,
                released_at: 0,
            },
        );
        if k == 0 {
            abandoned_link = (repository, blob);
        }
        if k % 10 == 0 {
            let other = (repositories[repository as usize].project + 1) % projects.len();
            let pool = project_pool(other);
            let mounted = pool.start + rng.below(pool.len() as u64) as u32;
            links.entry((repository, mounted)).or_insert(Link {
                refs: 0,
                linked_at: t,
                released_at: 0,
            });
        }
    }
    let unlinked_at = (next_layer + abandoned as u32..shape.blobs as u32)
        .map(|b| (b, at(&mut rng)))
        .collect();
    Plan {
        projects,
        repositories,
        manifests,
        configs,
        unlinked_at,
        links,
        abandoned: abandoned_link,
        retention_per_repository,
    }
}

/// The bytes of blob `number`: an image config, or a small layer.
fn blob_content(number: u32, config: bool) -> Vec<u8> {
    if config {
        return format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"bench.blob":"{number}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        )
        .into_bytes();
    }
    let mut rng = Rng::new(u64::from(number) + 1);
    let mut bytes = format!("layer {number}\n").into_bytes();
    let size = 200 + rng.below(1000) as usize;
    bytes.extend_from_slice(&rng.bytes(size));
    bytes
}

/// Where the filesystem blob store keeps a blob (`crates/storage/src/fs.rs`).
fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.encoded();
    root.join("blobs/sha256").join(&hex[..2]).join(hex)
}

/// Writes every blob's file under the blob store's `root`; returns each
/// blob's digest and size.
fn write_blobs(
    root: &Path,
    count: usize,
    is_config: impl Fn(u32) -> bool + Sync,
) -> anyhow::Result<Vec<(Digest, u32)>> {
    for byte in 0..=255u8 {
        std::fs::create_dir_all(root.join(format!("blobs/sha256/{byte:02x}")))?;
    }
    let threads = 4;
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let is_config = &is_config;
                scope.spawn(move || -> anyhow::Result<Vec<(Digest, u32)>> {
                    let range = t * per_thread..((t + 1) * per_thread).min(count);
                    let mut out = Vec::with_capacity(range.len());
                    for number in range {
                        let number = number as u32;
                        let content = blob_content(number, is_config(number));
                        let digest = Digest::compute(DigestAlgorithm::Sha256, &content);
                        std::fs::write(blob_path(root, &digest), &content)?;
                        out.push((digest, content.len() as u32));
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for worker in workers {
            all.extend(worker.join().expect("a seeding thread panicked")?);
        }
        Ok(all)
    })
}

/// Images first, then indexes (which name their images' digests).
fn write_manifest_bodies(plan: &mut Plan, blobs: &[(Digest, u32)]) {
    let descriptor = |media_type: &str, b: u32| {
        let (digest, size) = &blobs[b as usize];
        json!({"mediaType": media_type, "digest": digest.as_str(), "size": size})
    };
    for m in plan.manifests.iter_mut().filter(|m| m.config.is_some()) {
        let config = m.config.expect("an image");
        let layers: Vec<_> = m.layers.iter().map(|&l| descriptor(OCI_LAYER, l)).collect();
        m.body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": layers,
        }))
        .expect("serializable");
        m.digest = Some(Digest::compute(DigestAlgorithm::Sha256, &m.body));
    }
    for i in 0..plan.manifests.len() {
        if plan.manifests[i].config.is_some() {
            continue;
        }
        let platforms: Vec<_> = plan.manifests[i]
            .children
            .iter()
            .zip(["amd64", "arm64"])
            .map(|(&c, architecture)| {
                let child = &plan.manifests[c as usize];
                json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": child.digest.as_ref().expect("images first").as_str(),
                    "size": child.body.len(),
                    "platform": {"architecture": architecture, "os": "linux"},
                })
            })
            .collect();
        let m = &mut plan.manifests[i];
        m.body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": platforms,
        }))
        .expect("serializable");
        m.digest = Some(Digest::compute(DigestAlgorithm::Sha256, &m.body));
    }
}

fn digest_of(m: &Manifest) -> &Digest {
    m.digest.as_ref().expect("bodies written")
}

/// What a collection and the retention policy must find, and what to pull.
fn expectations(plan: &Plan, blobs: &[(Digest, u32)], shape: &Shape) -> Seeded {
    let mut garbage = Garbage::default();
    // Per blob: (links, links without a manifest).
    let mut holders: HashMap<u32, (u32, u32)> = HashMap::new();
    for (&(_, blob), link) in &plan.links {
        let h = holders.entry(blob).or_default();
        h.0 += 1;
        if link.refs == 0 {
            h.1 += 1;
            garbage.stale_links += 1;
        }
    }
    let mut unlinked_blobs = 0;
    for (b, (_, size)) in blobs.iter().enumerate() {
        let doomed = match holders.get(&(b as u32)) {
            None => {
                unlinked_blobs += 1;
                true
            }
            Some(&(links, stale)) => links == stale,
        };
        if doomed {
            garbage.blobs += 1;
            garbage.blob_bytes += u64::from(*size);
        }
    }
    for m in plan.manifests.iter().filter(|m| m.deleted_at.is_some()) {
        garbage.manifests += 1;
        garbage.manifest_bytes += m.body.len() as u64;
    }

    // Retention keeps, per repository, the 10 newest builds and the 3
    // highest patches of each minor; a minor holds PATCHES_PER_MINOR patches
    // but the last, which may hold fewer.
    let per = plan.retention_per_repository;
    let kept = (0..per)
        .filter(|&n| {
            let minor_start = n / PATCHES_PER_MINOR * PATCHES_PER_MINOR;
            let patches = (per - minor_start).min(PATCHES_PER_MINOR);
            n + 10 >= per || n - minor_start + 3 >= patches
        })
        .count();
    let retention = RetentionSeed {
        repositories: shape.retention_repositories,
        artifacts: per * shape.retention_repositories,
        tags: 2 * per * shape.retention_repositories,
        would_delete: (per - kept) * shape.retention_repositories,
        policy: json!({"rules": [
            {"repositories": {"include": ["**"]}, "tags": {"include": ["build-*"]},
             "keep": {"latest_pushed": 10}},
            {"repositories": {"include": ["**"]}, "tags": {"include": ["re:v?\\d+\\.\\d+\\.\\d+"]},
             "keep": {"latest_patches_per_minor": 3}},
        ]}),
    };

    let name = |m: &Manifest| plan.repositories[m.repository as usize].name.clone();
    let blob_digests =
        |m: &Manifest| -> Vec<Digest> { m.blobs().map(|b| blobs[b as usize].0.clone()).collect() };
    let mut samples = Vec::new();
    // `latest` of three repositories that lost a manifest, whose shared
    // layers the collection must leave alone.
    let mut seen = Vec::new();
    for deleted in plan.manifests.iter().filter(|m| m.deleted_at.is_some()) {
        if seen.len() == 3 || seen.contains(&deleted.repository) {
            continue;
        }
        if let Some(m) = plan
            .manifests
            .iter()
            .find(|m| m.repository == deleted.repository && m.tags.iter().any(|t| t == "latest"))
        {
            seen.push(deleted.repository);
            samples.push(Sample {
                repository: name(m),
                reference: "latest".to_owned(),
                digest: digest_of(m).clone(),
                blobs: blob_digests(m),
            });
        }
    }
    if let Some(index) = plan.manifests.iter().find(|m| m.config.is_none()) {
        samples.push(Sample {
            repository: name(index),
            reference: index.tags[0].clone(),
            digest: digest_of(index).clone(),
            blobs: Vec::new(),
        });
        for &c in &index.children {
            let child = &plan.manifests[c as usize];
            samples.push(Sample {
                repository: name(child),
                reference: digest_of(child).to_string(),
                digest: digest_of(child).clone(),
                blobs: blob_digests(child),
            });
        }
    }
    if let Some(build) = plan.manifests.iter().rev().find(|m| {
        plan.repositories[m.repository as usize]
            .name
            .starts_with("ci/")
    }) {
        samples.push(Sample {
            repository: name(build),
            reference: build.tags[0].clone(),
            digest: digest_of(build).clone(),
            blobs: blob_digests(build),
        });
    }
    let (repository, blob) = plan.abandoned;
    Seeded {
        blobs: blobs.len(),
        manifests: plan.manifests.len(),
        repositories: plan.repositories.len(),
        tags: plan.manifests.iter().map(|m| m.tags.len()).sum(),
        garbage,
        unlinked_blobs,
        retention,
        samples,
        stale_blob: (
            plan.repositories[repository as usize].name.clone(),
            blobs[blob as usize].0.clone(),
        ),
    }
}

/// Inserts `rows` into the table `head` names (`INSERT INTO t (a, b) `),
/// many rows per statement.
async fn insert_all<T>(
    conn: &mut SqliteConnection,
    head: &str,
    columns: usize,
    rows: &[T],
    mut bind: impl FnMut(&mut Separated<'_, Sqlite, &'static str>, &T),
) -> anyhow::Result<()> {
    // SQLite takes at most 32,766 parameters per statement.
    for chunk in rows.chunks(30_000 / columns) {
        let mut query = QueryBuilder::<Sqlite>::new(head);
        query.push_values(chunk, |mut b, row| bind(&mut b, row));
        query
            .build()
            .persistent(false)
            .execute(&mut *conn)
            .await
            .with_context(|| head.to_owned())?;
    }
    Ok(())
}

/// One outbox row.
struct Event<'a> {
    at: i64,
    kind: &'static str,
    repository: &'a str,
    digest: &'a str,
    tag: Option<&'a str>,
    media_type: Option<&'static str>,
    size: i64,
}

async fn insert_rows(database: &Path, plan: &Plan, blobs: &[(Digest, u32)]) -> anyhow::Result<()> {
    let options = SqliteConnectOptions::new()
        .filename(database)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        .foreign_keys(true)
        .pragma("cache_size", "-1000000");
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let mut tx = conn.begin().await?;
    let first_project: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM projects")
        .fetch_one(&mut *tx)
        .await?;
    let created = plan.repositories[0].created_at;
    let projects: Vec<(i64, &str)> = plan
        .projects
        .iter()
        .enumerate()
        .map(|(p, name)| (first_project + p as i64, name.as_str()))
        .collect();
    insert_all(
        &mut tx,
        "INSERT INTO projects (id, name, created_at, updated_at) ",
        4,
        &projects,
        |b, (id, name)| {
            b.push_bind(*id)
                .push_bind(*name)
                .push_bind(created)
                .push_bind(created);
        },
    )
    .await?;
    let repository_id = |r: u32| i64::from(r) + 1;
    let repositories: Vec<(i64, &Repository)> = plan
        .repositories
        .iter()
        .enumerate()
        .map(|(r, repo)| (repository_id(r as u32), repo))
        .collect();
    insert_all(
        &mut tx,
        "INSERT INTO repositories (id, name, created_at, project_id) ",
        4,
        &repositories,
        |b, (id, repo)| {
            b.push_bind(*id)
                .push_bind(repo.name.as_str())
                .push_bind(repo.created_at)
                .push_bind(first_project + repo.project as i64);
        },
    )
    .await?;

    // A blob was stored when it was first linked (or uploaded, unlinked; a
    // pool layer no image drew counts as uploaded when the history starts).
    let mut stored_at: HashMap<u32, i64> = plan.unlinked_at.clone();
    for (&(_, blob), link) in &plan.links {
        let t = stored_at.entry(blob).or_insert(link.linked_at);
        *t = (*t).min(link.linked_at);
    }
    let mut blob_rows: Vec<(&str, i64, i64)> = blobs
        .iter()
        .enumerate()
        .map(|(b, (digest, size))| {
            let at = stored_at.get(&(b as u32)).copied().unwrap_or(created);
            (digest.as_str(), i64::from(*size), at)
        })
        .collect();
    blob_rows.sort_unstable();
    insert_all(
        &mut tx,
        "INSERT INTO blobs (digest, size, created_at) ",
        3,
        &blob_rows,
        |b, (digest, size, at)| {
            b.push_bind(*digest).push_bind(*size).push_bind(*at);
        },
    )
    .await?;
    let mut link_rows: Vec<(i64, &str, i64, i64)> = plan
        .links
        .iter()
        .map(|(&(r, blob), link)| {
            (
                repository_id(r),
                blobs[blob as usize].0.as_str(),
                link.stored_linked_at(),
                i64::from(link.refs),
            )
        })
        .collect();
    link_rows.sort_unstable();
    insert_all(
        &mut tx,
        "INSERT INTO repository_blobs (repository_id, digest, linked_at, refs) ",
        4,
        &link_rows,
        |b, (repository, digest, at, refs)| {
            b.push_bind(*repository)
                .push_bind(*digest)
                .push_bind(*at)
                .push_bind(*refs);
        },
    )
    .await?;

    insert_all(
        &mut tx,
        "INSERT INTO manifest_contents (digest, media_type, size, body, created_at) ",
        5,
        &plan.manifests,
        |b, m| {
            b.push_bind(digest_of(m).as_str())
                .push_bind(m.media_type())
                .push_bind(m.body.len() as i64)
                .push_bind(m.body.as_slice())
                .push_bind(m.pushed_at);
        },
    )
    .await?;
    let mut references: Vec<(&str, i64, &str)> = Vec::new();
    for m in &plan.manifests {
        let digest = digest_of(m).as_str();
        references.extend(m.blobs().map(|b| (digest, 0, blobs[b as usize].0.as_str())));
        references.extend(
            m.children
                .iter()
                .map(|&c| (digest, 1, digest_of(&plan.manifests[c as usize]).as_str())),
        );
    }
    references.sort_unstable();
    references.dedup();
    insert_all(
        &mut tx,
        "INSERT INTO manifest_references (manifest_digest, kind, target_digest) ",
        3,
        &references,
        |b, (manifest, kind, target)| {
            b.push_bind(*manifest).push_bind(*kind).push_bind(*target);
        },
    )
    .await?;
    let mut held: Vec<(i64, &str, i64)> = plan
        .manifests
        .iter()
        .filter(|m| m.deleted_at.is_none())
        .map(|m| {
            (
                repository_id(m.repository),
                digest_of(m).as_str(),
                m.pushed_at,
            )
        })
        .collect();
    held.sort_unstable();
    insert_all(
        &mut tx,
        "INSERT INTO manifests (repository_id, digest, pushed_at) ",
        3,
        &held,
        |b, (repository, digest, at)| {
            b.push_bind(*repository).push_bind(*digest).push_bind(*at);
        },
    )
    .await?;
    let mut tags: Vec<(i64, &str, &str, i64)> = plan
        .manifests
        .iter()
        .flat_map(|m| {
            m.tags.iter().map(move |t| {
                (
                    repository_id(m.repository),
                    t.as_str(),
                    digest_of(m).as_str(),
                    m.pushed_at,
                )
            })
        })
        .collect();
    tags.sort_unstable();
    insert_all(
        &mut tx,
        "INSERT INTO tags (repository_id, name, digest, updated_at) ",
        4,
        &tags,
        |b, (repository, name, digest, at)| {
            b.push_bind(*repository)
                .push_bind(*name)
                .push_bind(*digest)
                .push_bind(*at);
        },
    )
    .await?;

    // Usage: each distinct blob linked in a project and each distinct
    // manifest held in it, once; artifacts are manifests held.
    let mut usage: Vec<(i64, i64, i64)> = vec![(0, 0, 0); plan.projects.len()];
    let mut counted_blobs: std::collections::HashSet<(usize, u32)> = Default::default();
    for &(r, blob) in plan.links.keys() {
        let project = plan.repositories[r as usize].project;
        if counted_blobs.insert((project, blob)) {
            usage[project].1 += i64::from(blobs[blob as usize].1);
        }
    }
    let mut counted_manifests: std::collections::HashSet<(usize, &str)> = Default::default();
    for m in plan.manifests.iter().filter(|m| m.deleted_at.is_none()) {
        let project = plan.repositories[m.repository as usize].project;
        usage[project].2 += 1;
        if counted_manifests.insert((project, digest_of(m).as_str())) {
            usage[project].1 += m.body.len() as i64;
        }
    }
    for (p, row) in usage.iter_mut().enumerate() {
        row.0 = first_project + p as i64;
    }
    insert_all(
        &mut tx,
        "INSERT INTO project_usage (project_id, shard, bytes, artifacts) ",
        4,
        &usage,
        |b, (project, bytes, artifacts)| {
            b.push_bind(*project)
                .push_bind(0i64)
                .push_bind(*bytes)
                .push_bind(*artifacts);
        },
    )
    .await?;

    let mut events: Vec<Event<'_>> = Vec::new();
    let mut first_link: HashMap<u32, (i64, u32)> = HashMap::new();
    for (&(r, blob), link) in &plan.links {
        let first = first_link.entry(blob).or_insert((link.linked_at, r));
        *first = (*first).min((link.linked_at, r));
    }
    for (&(r, blob), link) in &plan.links {
        let (digest, size) = &blobs[blob as usize];
        events.push(Event {
            at: link.linked_at,
            kind: if first_link[&blob] == (link.linked_at, r) {
                "blob.pushed"
            } else {
                "blob.mounted"
            },
            repository: &plan.repositories[r as usize].name,
            digest: digest.as_str(),
            tag: None,
            media_type: None,
            size: i64::from(*size),
        });
    }
    for m in &plan.manifests {
        let manifest = |at, kind, tag| Event {
            at,
            kind,
            repository: &plan.repositories[m.repository as usize].name,
            digest: digest_of(m).as_str(),
            tag,
            media_type: Some(m.media_type()),
            size: m.body.len() as i64,
        };
        events.push(manifest(m.pushed_at, "manifest.pushed", None));
        for tag in &m.tags {
            events.push(manifest(m.pushed_at, "tag.created", Some(tag.as_str())));
        }
        if let Some(deleted_at) = m.deleted_at {
            events.push(manifest(deleted_at, "manifest.deleted", None));
        }
    }
    events.sort_by_key(|e| e.at);
    insert_all(
        &mut tx,
        "INSERT INTO events (kind, repository, digest, tag, media_type, size, actor, occurred_at) ",
        8,
        &events,
        |b, e| {
            b.push_bind(e.kind)
                .push_bind(e.repository)
                .push_bind(e.digest)
                .push_bind(e.tag)
                .push_bind(e.media_type)
                .push_bind(e.size)
                .push_bind(ACTOR)
                .push_bind(e.at);
        },
    )
    .await?;
    tx.commit().await?;
    // wharf starts on a checkpointed database, as after a clean shutdown.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}
