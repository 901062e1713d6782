//! Who is asking, and what they may do.
//!
//! Authorization produces a [`Grant`]: a value proving that a principal may
//! perform one action on one repository. The registry's operations take the
//! grant they need (`Grant<Pull>`, `Grant<Push>`, `Grant<Delete>`), so code that
//! was never granted a write cannot perform one. Only [`authorize`] creates
//! grants.
//!
//! The rules live here too, without I/O, so they can be tested as tables:
//! - [`policy`]: roles, repository grants, robot permissions and the
//!   decision for a [`Subject`]; [`SubjectAccess`] is that decision as an
//!   [`Authorizer`].
//! - [`token`]: registry tokens (signed JWTs) and scopes; an access token's
//!   claims are an [`Authorizer`] too ([`token::TokenAccess`]), which is how
//!   `/v2` requests are authorized without a database round trip.
//! - [`secret`]: argon2id password hashes, generated secrets, constant-time
//!   comparison.
//!
//! Finding out *who* is asking (credentials, LDAP) and loading what the
//! decision needs (memberships, public projects) is I/O and belongs to the
//! `identity` crate.
//!
//! What this crate must not do: I/O of any kind.

pub mod policy;
pub mod secret;
pub mod token;

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use oci::RepoName;

pub use policy::{
    ANY_PROJECT, Capability, Membership, RepoActions, RobotPermission, Role, Subject,
};

/// An action on a repository, as Docker token scopes name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    /// An authenticated user or robot, by its unique name.
    Named(String),
}

impl Principal {
    /// The name recorded as the actor of changes and in events.
    pub fn actor_name(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::Named(name) => name,
        }
    }
}

/// Decides whether a principal may perform an action on a repository.
pub trait Authorizer: Send + Sync + fmt::Debug + 'static {
    fn allows(&self, principal: &Principal, action: Action, repository: &RepoName) -> bool;
}

/// A [`Subject`]'s rights, with whether each project it may touch is public.
/// A project missing from `public` is treated as private.
#[derive(Clone, Debug)]
pub struct SubjectAccess {
    pub subject: Subject,
    pub public: HashMap<String, bool>,
}

impl SubjectAccess {
    pub fn actions(&self, repository: &RepoName) -> RepoActions {
        let public = self
            .public
            .get(repository.project())
            .copied()
            .unwrap_or(false);
        self.subject.repository_actions(repository, public)
    }
}

impl Authorizer for SubjectAccess {
    fn allows(&self, _: &Principal, action: Action, repository: &RepoName) -> bool {
        self.actions(repository).contains(RepoActions::of(action))
    }
}

/// Marker types for the action a [`Grant`] proves.
pub mod action {
    /// May read manifests, tags, blobs and referrers.
    #[derive(Debug)]
    pub enum Pull {}
    /// May upload blobs and manifests and move tags.
    #[derive(Debug)]
    pub enum Push {}
    /// May delete manifests, tags and blob links.
    #[derive(Debug)]
    pub enum Delete {}
}

/// Ties a marker type to its [`Action`].
pub trait GrantedAction: fmt::Debug + 'static {
    const ACTION: Action;
}
impl GrantedAction for action::Pull {
    const ACTION: Action = Action::Pull;
}
impl GrantedAction for action::Push {
    const ACTION: Action = Action::Push;
}
impl GrantedAction for action::Delete {
    const ACTION: Action = Action::Delete;
}

pub type Pull = action::Pull;
pub type Push = action::Push;
pub type Delete = action::Delete;

/// Proof that `principal` may perform `A` on `repository`.
pub struct Grant<A: GrantedAction> {
    principal: Principal,
    repository: RepoName,
    /// Kept so the holder can ask about other repositories (a mount reads
    /// from a second repository, and only if the same principal may pull it).
    authorizer: Arc<dyn Authorizer>,
    _action: PhantomData<A>,
}

impl<A: GrantedAction> fmt::Debug for Grant<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("action", &A::ACTION)
            .field("principal", &self.principal)
            .field("repository", &self.repository)
            .finish()
    }
}

impl<A: GrantedAction> Grant<A> {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn repository(&self) -> &RepoName {
        &self.repository
    }

    /// Whether the same principal may pull from another repository.
    pub fn may_pull(&self, other: &RepoName) -> bool {
        self.authorizer.allows(&self.principal, Action::Pull, other)
    }
}

/// The principal may not perform the action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{principal} may not {action} {repository}", principal = .principal.actor_name(), action = .action.as_str())]
pub struct Denied {
    pub principal: Principal,
    pub action: Action,
    pub repository: RepoName,
}

/// Checks an action and returns the grant proving it.
pub fn authorize<A: GrantedAction>(
    authorizer: &Arc<dyn Authorizer>,
    principal: &Principal,
    repository: &RepoName,
) -> Result<Grant<A>, Denied> {
    if authorizer.allows(principal, A::ACTION, repository) {
        Ok(Grant {
            principal: principal.clone(),
            repository: repository.clone(),
            authorizer: authorizer.clone(),
            _action: PhantomData,
        })
    } else {
        Err(Denied {
            principal: principal.clone(),
            action: A::ACTION,
            repository: repository.clone(),
        })
    }
}

/// Answers "may this principal see that repository" for listings.
#[derive(Clone, Debug)]
pub struct Viewer {
    principal: Principal,
    authorizer: Arc<dyn Authorizer>,
}

impl Viewer {
    pub fn new(principal: Principal, authorizer: Arc<dyn Authorizer>) -> Self {
        Viewer {
            principal,
            authorizer,
        }
    }

    pub fn may_see(&self, repository: &RepoName) -> bool {
        self.authorizer
            .allows(&self.principal, Action::Pull, repository)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct OnlyPullOf(&'static str);
    impl Authorizer for OnlyPullOf {
        fn allows(&self, _: &Principal, action: Action, repo: &RepoName) -> bool {
            action == Action::Pull && repo.as_str() == self.0
        }
    }

    #[test]
    fn grants_follow_the_authorizer() {
        let auth: Arc<dyn Authorizer> = Arc::new(OnlyPullOf("a/b"));
        let who = Principal::Named("ci".into());
        let ab = RepoName::parse("a/b").unwrap();
        let cd = RepoName::parse("c/d").unwrap();
        let pull = authorize::<Pull>(&auth, &who, &ab).unwrap();
        assert_eq!(pull.repository(), &ab);
        assert!(pull.may_pull(&ab));
        assert!(!pull.may_pull(&cd));
        let denied = authorize::<Push>(&auth, &who, &ab).unwrap_err();
        assert_eq!(denied.to_string(), "ci may not push a/b");
        assert!(Viewer::new(who, auth).may_see(&ab));
    }
}
