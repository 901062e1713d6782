//! Media types wharf gives meaning to.

pub const OCI_IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1, refused: it is deprecated and unverifiable without its signature scheme.
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// The OCI "empty" descriptor's media type, used for artifacts without a config.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Layer media types whose content is, by design, not pushed to the registry.
/// Descriptors of these may carry `urls` and need not exist as blobs.
pub const NON_DISTRIBUTABLE_LAYERS: &[&str] = &[
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// The media type without parameters, trimmed and lowercased
/// (`application/json; charset=utf-8` becomes `application/json`).
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}
