//! Parsing and validating pushed manifests.
//!
//! wharf stores the four manifest types current clients push: OCI image
//! manifests and indexes (including artifacts with `artifactType`, empty configs
//! and `subject`), and Docker schema 2 manifests and manifest lists. The bytes a
//! client pushed are stored untouched; [`Manifest`] is the parsed view used to
//! check references and to answer the referrers API.
//!
//! Hand-written rather than `oci-spec` types: the registry must accept every
//! well-formed manifest byte-for-byte (unknown fields, Docker types, optional
//! fields missing) while refusing ambiguous ones (an "image" with `manifests`,
//! duplicate keys), and only needs the fields that carry references.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::descriptor::Descriptor;
use crate::media_type::{self, essence};

/// The kind of a stored manifest, which fixes its media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ManifestKind {
    OciImage,
    OciIndex,
    DockerImage,
    DockerList,
}

impl ManifestKind {
    pub const fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciImage => media_type::OCI_IMAGE_MANIFEST,
            ManifestKind::OciIndex => media_type::OCI_IMAGE_INDEX,
            ManifestKind::DockerImage => media_type::DOCKER_MANIFEST_V2,
            ManifestKind::DockerList => media_type::DOCKER_MANIFEST_LIST,
        }
    }

    pub fn from_media_type(mt: &str) -> Option<Self> {
        match mt {
            media_type::OCI_IMAGE_MANIFEST => Some(ManifestKind::OciImage),
            media_type::OCI_IMAGE_INDEX => Some(ManifestKind::OciIndex),
            media_type::DOCKER_MANIFEST_V2 => Some(ManifestKind::DockerImage),
            media_type::DOCKER_MANIFEST_LIST => Some(ManifestKind::DockerList),
            _ => None,
        }
    }

    /// Indexes and manifest lists point at other manifests.
    pub const fn is_index(self) -> bool {
        matches!(self, ManifestKind::OciIndex | ManifestKind::DockerList)
    }
}

/// Why a pushed manifest is refused (reported as `MANIFEST_INVALID`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for its type: {0}")]
    Json(String),
    #[error("schemaVersion must be 2")]
    SchemaVersion,
    #[error(
        "Docker schema 1 manifests are not supported; push with a current client, \
         which writes Docker schema 2 or OCI manifests"
    )]
    SchemaOne,
    #[error(
        "unsupported manifest media type {0:?}; wharf stores OCI image manifests and indexes \
         and Docker schema 2 manifests and manifest lists"
    )]
    UnsupportedMediaType(String),
    #[error("Content-Type {header:?} does not match the manifest's mediaType {body:?}")]
    ContentTypeMismatch { header: String, body: String },
    #[error("a manifest of type {media_type} must have a {field:?} field")]
    MissingField {
        media_type: &'static str,
        field: &'static str,
    },
    #[error("a manifest of type {media_type} must not have a {field:?} field")]
    UnexpectedField {
        media_type: &'static str,
        field: &'static str,
    },
    #[error("cannot tell the manifest type: it has no mediaType, no config and no manifests")]
    UnknownShape,
}

fn is_schema_one(media_type: &str) -> bool {
    media_type == media_type::DOCKER_MANIFEST_V1
        || media_type == media_type::DOCKER_MANIFEST_V1_SIGNED
}

/// The fields of any manifest type that wharf reads. Unknown fields are ignored;
/// a duplicated known field is an error (serde refuses it), which closes the door
/// on manifests that different parsers would read differently.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<serde_json::Number>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// A validated manifest of one of the stored kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub kind: ManifestKind,
    /// Present exactly for image kinds.
    pub config: Option<Descriptor>,
    /// Image kinds only.
    pub layers: Vec<Descriptor>,
    /// Index kinds only.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType` as written (empty strings are treated as absent).
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses `body`, pushed with the given `Content-Type` header (if any).
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        let raw: RawManifest =
            serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;

        let declared = raw.media_type.as_deref().filter(|s| !s.is_empty());
        // The header counts only when it names a manifest type; generic types such as
        // application/json or application/octet-stream say nothing.
        let header = content_type
            .map(essence)
            .filter(|h| ManifestKind::from_media_type(h).is_some() || is_schema_one(h));
        let named = declared.or(header.as_deref());
        let version = raw.schema_version.as_ref().and_then(|v| v.as_u64());
        if version == Some(1) || named.is_some_and(is_schema_one) {
            return Err(ManifestError::SchemaOne);
        }
        if version != Some(2) {
            return Err(ManifestError::SchemaVersion);
        }
        if let (Some(h), Some(d)) = (header.as_deref(), declared)
            && h != d
        {
            return Err(ManifestError::ContentTypeMismatch {
                header: h.to_owned(),
                body: d.to_owned(),
            });
        }
        let kind = match named {
            Some(mt) => ManifestKind::from_media_type(mt)
                .ok_or_else(|| ManifestError::UnsupportedMediaType(mt.to_owned()))?,
            None => match (&raw.manifests, &raw.config) {
                (Some(_), None) => ManifestKind::OciIndex,
                (None, Some(_)) => ManifestKind::OciImage,
                _ => return Err(ManifestError::UnknownShape),
            },
        };

        let mt = kind.media_type();
        let missing = |field| ManifestError::MissingField {
            media_type: mt,
            field,
        };
        let unexpected = |field| ManifestError::UnexpectedField {
            media_type: mt,
            field,
        };
        let (config, layers, manifests) = if kind.is_index() {
            if raw.config.is_some() {
                return Err(unexpected("config"));
            }
            if raw.layers.is_some() {
                return Err(unexpected("layers"));
            }
            (
                None,
                Vec::new(),
                raw.manifests.ok_or_else(|| missing("manifests"))?,
            )
        } else {
            if raw.manifests.is_some() {
                return Err(unexpected("manifests"));
            }
            let config = raw.config.ok_or_else(|| missing("config"))?;
            let layers = raw.layers.ok_or_else(|| missing("layers"))?;
            (Some(config), layers, Vec::new())
        };

        Ok(Manifest {
            kind,
            config,
            layers,
            manifests,
            subject: raw.subject,
            artifact_type: raw.artifact_type.filter(|s| !s.is_empty()),
            annotations: raw.annotations.unwrap_or_default(),
        })
    }

    /// Blobs that must exist in the repository for this manifest to be stored:
    /// the config and every layer except non-distributable ones.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(
            self.layers
                .iter()
                .filter(|l| !media_type::NON_DISTRIBUTABLE_LAYERS.contains(&l.media_type.as_str())),
        )
    }

    /// Manifests that must exist in the repository: an index's children.
    /// The subject is deliberately not among them.
    pub fn required_manifests(&self) -> impl Iterator<Item = &Descriptor> {
        self.manifests.iter()
    }

    /// The `artifactType` a referrers list shows for this manifest: its own
    /// `artifactType`, else (for image manifests) the config's media type, else none.
    pub fn referrer_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":3}}]{extra}}}"#
        )
    }

    #[test]
    fn image_manifest() {
        let m =
            Manifest::parse(image("").as_bytes(), Some(media_type::OCI_IMAGE_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::OciImage);
        assert_eq!(m.required_blobs().count(), 2);
        assert_eq!(
            m.referrer_artifact_type(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn artifact_with_subject() {
        let body = image(&format!(
            r#","artifactType":"application/vnd.example.sbom","subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D1}","size":7}},"annotations":{{"a":"b"}}"#
        ));
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.subject.as_ref().unwrap().digest.as_str(), D1);
        assert_eq!(
            m.referrer_artifact_type(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(m.annotations.get("a").map(String::as_str), Some("b"));
    }

    #[test]
    fn index_and_inference() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D1}","size":5,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        let m = Manifest::parse(body.as_bytes(), Some("application/octet-stream")).unwrap();
        assert_eq!(m.kind, ManifestKind::OciIndex);
        assert_eq!(m.required_manifests().count(), 1);
        assert_eq!(m.referrer_artifact_type(), None);
        let m = Manifest::parse(body.as_bytes(), Some(media_type::DOCKER_MANIFEST_LIST)).unwrap();
        assert_eq!(m.kind, ManifestKind::DockerList);
    }

    #[test]
    fn non_distributable_layers_are_not_required() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{D2}","size":3,"urls":["https://example.com/x"]}}]}}"#
        );
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.kind, ManifestKind::DockerImage);
        assert_eq!(m.required_blobs().count(), 1);
    }

    #[test]
    fn refusals() {
        type Case<'a> = (String, Option<&'a str>, fn(&ManifestError) -> bool);
        let cases: Vec<Case> = vec![
            ("not json".into(), None, |e| {
                matches!(e, ManifestError::Json(_))
            }),
            ("[]".into(), None, |e| matches!(e, ManifestError::Json(_))),
            (r#"{"schemaVersion":1,"name":"x"}"#.into(), None, |e| {
                *e == ManifestError::SchemaOne
            }),
            // A schema 1 Content-Type on a body without mediaType.
            (
                image("").replace(
                    &format!("\"mediaType\":\"{}\",", media_type::OCI_IMAGE_MANIFEST),
                    "",
                ),
                Some(media_type::DOCKER_MANIFEST_V1_SIGNED),
                |e| *e == ManifestError::SchemaOne,
            ),
            (r#"{"schemaVersion":3,"config":{}}"#.into(), None, |e| {
                matches!(e, ManifestError::Json(_) | ManifestError::SchemaVersion)
            }),
            (image("").replace("\"schemaVersion\":2,", ""), None, |e| {
                *e == ManifestError::SchemaVersion
            }),
            (image(""), Some(media_type::OCI_IMAGE_INDEX), |e| {
                matches!(e, ManifestError::ContentTypeMismatch { .. })
            }),
            (
                image("").replace(
                    media_type::OCI_IMAGE_MANIFEST,
                    "application/vnd.oci.artifact.manifest.v1+json",
                ),
                None,
                |e| matches!(e, ManifestError::UnsupportedMediaType(_)),
            ),
            (image(r#","manifests":[]"#), None, |e| {
                matches!(
                    e,
                    ManifestError::UnexpectedField {
                        field: "manifests",
                        ..
                    }
                )
            }),
            (
                image("").replace(D2, "sha256:zz"),
                None,
                |e| matches!(e, ManifestError::Json(m) if m.contains("digest")),
            ),
            (image("").replace("\"size\":3", "\"size\":-3"), None, |e| {
                matches!(e, ManifestError::Json(_))
            }),
            (
                image(r#","layers":[]"#),
                None,
                |e| matches!(e, ManifestError::Json(m) if m.contains("duplicate")),
            ),
            (r#"{"schemaVersion":2}"#.into(), None, |e| {
                *e == ManifestError::UnknownShape
            }),
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[],"config":{{"mediaType":"x","digest":"{D1}","size":1}}}}"#,
                    media_type::OCI_IMAGE_INDEX
                ),
                None,
                |e| {
                    matches!(
                        e,
                        ManifestError::UnexpectedField {
                            field: "config",
                            ..
                        }
                    )
                },
            ),
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{}"}}"#,
                    media_type::OCI_IMAGE_INDEX
                ),
                None,
                |e| {
                    matches!(
                        e,
                        ManifestError::MissingField {
                            field: "manifests",
                            ..
                        }
                    )
                },
            ),
        ];
        for (body, ct, check) in cases {
            let err = Manifest::parse(body.as_bytes(), ct).expect_err(&body);
            assert!(check(&err), "body {body} gave {err:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Manifest::parse(&body, None);
        }

        #[test]
        fn json_shaped_input_never_panics(
            keys in proptest::collection::vec(
                prop_oneof![Just("schemaVersion"), Just("mediaType"), Just("config"), Just("layers"),
                            Just("manifests"), Just("subject"), Just("artifactType"), Just("annotations")], 0..6),
            values in proptest::collection::vec(
                prop_oneof![Just("2".to_string()), Just("\"x\"".to_string()), Just("[]".to_string()),
                            Just("{}".to_string()), Just("null".to_string()),
                            Just(format!(r#"{{"mediaType":"m","digest":"{D1}","size":1}}"#)),
                            Just(format!(r#"[{{"mediaType":"m","digest":"{D1}","size":1}}]"#))], 6),
        ) {
            let fields: Vec<String> = keys.iter().zip(values.iter()).map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let body = format!("{{{}}}", fields.join(","));
            let _ = Manifest::parse(body.as_bytes(), None);
        }
    }
}
