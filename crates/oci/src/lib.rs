//! The vocabulary of the OCI distribution and image specifications.
//!
//! Everything here is pure: no I/O, no async, no clocks. Values are parsed at the
//! edge of the system into the newtypes below ([`Digest`], [`RepoName`], [`Tag`],
//! [`Reference`], [`Manifest`]) so that the rest of wharf never handles an
//! unchecked string where one of these is meant. Parsing is validation: a value of
//! one of these types is always well formed.
//!
//! What this crate must not do: know about HTTP, storage, databases or users.
//! Mapping an [`ErrorCode`] to an HTTP status happens in the `http` crate.

mod descriptor;
mod digest;
mod error_code;
mod manifest;
pub mod media_type;
mod name;
mod reference;

pub use descriptor::{Descriptor, Platform};
pub use digest::{Digest, DigestAlgorithm, DigestError, DigestHasher, HasherStateError};
pub use error_code::ErrorCode;
pub use manifest::{Manifest, ManifestError, ManifestKind};
pub use name::{NameError, RepoName, Tag, TagError};
pub use reference::{Reference, ReferenceError};
