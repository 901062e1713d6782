//! Registry tokens as Docker's token authentication uses them: JWTs
//! (RFC 7519) whose `access` claim lists exactly the granted actions, and
//! refresh tokens (`offline_token`) that buy new ones without a password.
//!
//! Tokens are signed with HMAC-SHA256 under a key id (`kid`) from a
//! [`KeyRing`]: the ring signs with its newest key and still verifies with
//! the keys it retired, so rotating the key does not log anyone out; tokens
//! signed with a key that left the ring stop working.
//!
//! Written by hand rather than with a JWT crate on purpose: only wharf ever
//! verifies these tokens, with one algorithm, and the JWT crates bring RSA,
//! elliptic curves and EdDSA (or aws-lc) to compute one HMAC. What is here is
//! base64url, serde_json and an `hmac` check, with a strict verifier: the one
//! algorithm, a known key id, and the issuer, audience, kind and lifetime.
//!
//! Scopes (`repository:team/app:pull,push`, `registry:catalog:*`) are parsed
//! here too, since they are what a token is asked for.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use oci::RepoName;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::policy::RepoActions;
use crate::{Action, Authorizer, Principal};

/// Longest token accepted: a few hundred repositories' worth of access.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;
/// Clock skew tolerated between nodes for `nbf` and `exp`, in seconds.
pub const LEEWAY_SECONDS: i64 = 30;

/// A key that signs and verifies tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    id: String,
    secret: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl SigningKey {
    pub fn new(id: impl Into<String>, secret: Vec<u8>) -> Self {
        SigningKey {
            id: id.into(),
            secret,
        }
    }

    /// A new key: 256 random bits under a random id.
    pub fn generate() -> Self {
        let id = crate::secret::random_bytes::<8>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        SigningKey::new(id, crate::secret::random_bytes::<32>().to_vec())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    fn mac(&self, data: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC accepts keys of any length");
        mac.update(data);
        mac
    }
}

/// The key that signs, and every key that still verifies.
#[derive(Clone, Debug)]
pub struct KeyRing {
    signing: SigningKey,
    verifying: Vec<SigningKey>,
}

/// Why a token was refused. Deliberately coarse towards clients: the
/// message says "invalid token" and the variant is for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("bad token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token for another issuer, audience or use")]
    WrongAudience,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

impl KeyRing {
    /// A ring that signs with `signing` and also verifies with `retired`.
    pub fn new(signing: SigningKey, retired: Vec<SigningKey>) -> Self {
        let mut verifying = vec![signing.clone()];
        verifying.extend(retired.into_iter().filter(|k| k.id != signing.id));
        KeyRing { signing, verifying }
    }

    pub fn signing_key_id(&self) -> &str {
        &self.signing.id
    }

    pub fn knows(&self, kid: &str) -> bool {
        self.verifying.iter().any(|k| k.id == kid)
    }

    /// Signs `claims` as a compact JWT.
    pub fn sign<C: Serialize>(&self, claims: &C) -> String {
        let header = Header {
            alg: "HS256".into(),
            typ: "JWT".into(),
            kid: self.signing.id.clone(),
        };
        let mut token = encode_part(&header);
        token.push('.');
        token.push_str(&encode_part(claims));
        let tag = self.signing.mac(token.as_bytes()).finalize().into_bytes();
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(tag));
        token
    }

    /// The key id a token names, if it is shaped like a JWT at all.
    pub fn key_id_of(token: &str) -> Option<String> {
        let header = token.split('.').next()?;
        let header: Header = decode_part(header).ok()?;
        Some(header.kid)
    }

    /// Checks the signature and decodes the claims; the caller checks what
    /// the claims say (see [`Claims::check`]).
    pub fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = decode_part(header)?;
        if header.alg != "HS256" {
            return Err(TokenError::Malformed);
        }
        let key = self
            .verifying
            .iter()
            .find(|k| k.id == header.kid)
            .ok_or(TokenError::UnknownKey)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        let signed = &token[..token.len() - token.rsplit('.').next().map_or(0, str::len) - 1];
        // `verify_slice` compares in constant time.
        key.mac(signed.as_bytes())
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        decode_part(claims)
    }
}

fn encode_part<T: Serialize>(value: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("token parts serialize"))
}

fn decode_part<T: DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Presented on `/v2` requests; carries `access`.
    Access,
    /// Exchanged at the token endpoint for access tokens.
    Refresh,
}

/// One entry of the `access` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAccess {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// The claims of every wharf token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user's or robot's name; empty for anonymous tokens.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<ResourceAccess>,
    /// Wharf's own claim: access or refresh.
    #[serde(rename = "wharf_kind")]
    pub kind: TokenKind,
}

impl Claims {
    /// Checks issuer, audience, kind and lifetime at `now` (seconds).
    pub fn check(
        &self,
        issuer: &str,
        audience: &str,
        kind: TokenKind,
        now: i64,
    ) -> Result<(), TokenError> {
        if self.iss != issuer || self.aud != audience || self.kind != kind {
            Err(TokenError::WrongAudience)
        } else if self.exp + LEEWAY_SECONDS <= now {
            Err(TokenError::Expired)
        } else if self.nbf - LEEWAY_SECONDS > now {
            Err(TokenError::NotYetValid)
        } else {
            Ok(())
        }
    }

    pub fn principal(&self) -> Principal {
        if self.sub.is_empty() {
            Principal::Anonymous
        } else {
            Principal::Named(self.sub.clone())
        }
    }

    /// The repository actions the token grants, for an [`Authorizer`].
    pub fn token_access(&self) -> TokenAccess {
        let repositories = self
            .access
            .iter()
            .filter(|a| a.kind == "repository")
            .map(|a| {
                let actions = a
                    .actions
                    .iter()
                    .filter_map(|n| RepoActions::parse_one(n))
                    .fold(RepoActions::NONE, RepoActions::with);
                (a.name.clone(), actions)
            })
            .collect();
        let catalog = self
            .access
            .iter()
            .any(|a| a.kind == "registry" && a.name == "catalog");
        TokenAccess {
            repositories,
            catalog,
        }
    }
}

/// What an access token grants, as an [`Authorizer`]: exactly the listed
/// actions on the listed repositories, nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenAccess {
    pub repositories: Vec<(String, RepoActions)>,
    /// `registry:catalog:*` was granted.
    pub catalog: bool,
}

impl Authorizer for TokenAccess {
    fn allows(&self, _: &Principal, action: Action, repository: &RepoName) -> bool {
        self.repositories.iter().any(|(name, actions)| {
            name == repository.as_str() && actions.contains(RepoActions::of(action))
        })
    }
}

/// One requested scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `repository:<name>:<actions>`; `*` asks for every action.
    Repository {
        name: RepoName,
        actions: RepoActions,
    },
    /// `registry:catalog:*`.
    Catalog,
}

impl Scope {
    /// Parses one scope. Unknown resource types and actions are ignored (the
    /// token then simply does not grant them), as Distribution does; a
    /// repository scope with an invalid name is an error.
    pub fn parse(s: &str) -> Result<Option<Scope>, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid scope {s:?}"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("invalid scope {s:?}"))?;
        // `repository(plugin)` is a resource class: the same repository.
        let kind = kind.split('(').next().unwrap_or(kind);
        match kind {
            "repository" => {
                let name = RepoName::parse(name)
                    .map_err(|e| format!("invalid repository in scope {s:?}: {e}"))?;
                let actions = actions
                    .split(',')
                    .map(|a| match a {
                        "*" => RepoActions::PULL
                            .with(RepoActions::PUSH)
                            .with(RepoActions::DELETE),
                        "pull" | "push" | "delete" => {
                            RepoActions::parse_one(a).unwrap_or(RepoActions::NONE)
                        }
                        _ => RepoActions::NONE,
                    })
                    .fold(RepoActions::NONE, RepoActions::with);
                Ok(Some(Scope::Repository { name, actions }))
            }
            "registry" if name == "catalog" => Ok(Some(Scope::Catalog)),
            _ => Ok(None),
        }
    }

    /// Parses every scope of a request (`scope` may repeat and each may hold
    /// several, separated by spaces).
    pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for value in values {
            for s in value.split(' ').filter(|s| !s.is_empty()) {
                if let Some(scope) = Scope::parse(s)? {
                    scopes.push(scope);
                }
            }
        }
        Ok(scopes)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Repository { name, actions } => {
                let names: Vec<&str> = actions
                    .names()
                    .filter(|n| matches!(*n, "pull" | "push" | "delete"))
                    .collect();
                write!(f, "repository:{name}:{}", names.join(","))
            }
            Scope::Catalog => f.write_str("registry:catalog:*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(kind: TokenKind) -> Claims {
        Claims {
            iss: "wharf".into(),
            sub: "alice".into(),
            aud: "registry".into(),
            exp: 2000,
            nbf: 1000,
            iat: 1000,
            jti: "j".into(),
            access: vec![ResourceAccess {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: vec!["pull".into(), "push".into()],
            }],
            kind,
        }
    }

    #[test]
    fn tokens_round_trip_and_verify_strictly() {
        let ring = KeyRing::new(SigningKey::generate(), vec![]);
        let token = ring.sign(&claims(TokenKind::Access));
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(
            KeyRing::key_id_of(&token).as_deref(),
            Some(ring.signing_key_id())
        );
        let back: Claims = ring.verify(&token).unwrap();
        assert_eq!(back, claims(TokenKind::Access));
        assert_eq!(
            back.check("wharf", "registry", TokenKind::Access, 1500),
            Ok(())
        );
        assert_eq!(
            back.check("wharf", "registry", TokenKind::Refresh, 1500),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            back.check("wharf", "other", TokenKind::Access, 1500),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            back.check(
                "wharf",
                "registry",
                TokenKind::Access,
                2000 + LEEWAY_SECONDS
            ),
            Err(TokenError::Expired)
        );
        assert_eq!(
            back.check(
                "wharf",
                "registry",
                TokenKind::Access,
                1000 - LEEWAY_SECONDS - 1
            ),
            Err(TokenError::NotYetValid)
        );

        // A changed payload, a foreign key, another algorithm: all refused.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut forged = claims(TokenKind::Access);
        forged.access[0].actions.push("delete".into());
        parts[1] = encode_part(&forged);
        assert_eq!(
            ring.verify::<Claims>(&parts.join(".")),
            Err(TokenError::BadSignature)
        );
        let other = KeyRing::new(SigningKey::generate(), vec![]);
        assert_eq!(other.verify::<Claims>(&token), Err(TokenError::UnknownKey));
        let none = format!(
            "{}.{}.",
            encode_part(&Header {
                alg: "none".into(),
                typ: "JWT".into(),
                kid: ring.signing_key_id().into()
            }),
            encode_part(&claims(TokenKind::Access))
        );
        assert_eq!(ring.verify::<Claims>(&none), Err(TokenError::Malformed));
        for junk in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            &"a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(ring.verify::<Claims>(junk).is_err(), "{junk:.20}");
        }
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_until_the_key_leaves() {
        let old = SigningKey::generate();
        let before = KeyRing::new(old.clone(), vec![]);
        let token = before.sign(&claims(TokenKind::Refresh));
        let rotated = KeyRing::new(SigningKey::generate(), vec![old]);
        assert!(rotated.verify::<Claims>(&token).is_ok());
        assert_ne!(
            KeyRing::key_id_of(&rotated.sign(&1)),
            KeyRing::key_id_of(&token)
        );
        let later = KeyRing::new(rotated.signing.clone(), vec![]);
        assert_eq!(later.verify::<Claims>(&token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn access_claims_authorize_exactly() {
        let access = claims(TokenKind::Access).token_access();
        let who = Principal::Named("alice".into());
        let app = RepoName::parse("team/app").unwrap();
        let web = RepoName::parse("team/web").unwrap();
        assert!(access.allows(&who, Action::Pull, &app));
        assert!(access.allows(&who, Action::Push, &app));
        assert!(!access.allows(&who, Action::Delete, &app));
        assert!(!access.allows(&who, Action::Pull, &web));
        assert!(!access.catalog);
    }

    #[test]
    fn scopes() {
        let all = Scope::parse_all([
            "repository:team/app:pull,push",
            "repository(plugin):x/y:* registry:catalog:* unknown:thing:x",
        ])
        .unwrap();
        assert_eq!(
            all,
            vec![
                Scope::Repository {
                    name: RepoName::parse("team/app").unwrap(),
                    actions: RepoActions::PULL.with(RepoActions::PUSH)
                },
                Scope::Repository {
                    name: RepoName::parse("x/y").unwrap(),
                    actions: RepoActions::PULL
                        .with(RepoActions::PUSH)
                        .with(RepoActions::DELETE)
                },
                Scope::Catalog,
            ]
        );
        assert_eq!(all[0].to_string(), "repository:team/app:pull,push");
        assert_eq!(
            Scope::parse("repository:a/b:read,scan,pull").unwrap(),
            Some(Scope::Repository {
                name: RepoName::parse("a/b").unwrap(),
                actions: RepoActions::PULL
            }),
            "only registry actions can be asked for in a token"
        );
        assert!(Scope::parse("repository:../x:pull").is_err());
        assert!(Scope::parse("nonsense").is_err());
    }
}
