//! The backend test suite for [`IdentityStore`]: every backend must pass these.

use std::collections::BTreeMap;

use auth::{Membership, RepoActions, RobotPermission, Role};

use super::{change, digest, repo};
use crate::identity::{
    AuditFilter, AuditRecord, IdentityStore, MemberFilter, MemberOf, NewMember, NewProject,
    NewRobot, NewUser, Page, ProjectFilter, ProjectPatch, RobotFilter, RobotPatch, Sort, StoredKey,
    UserFilter, UserPatch, UserSource,
};
use crate::{MetaStore, MetadataError};

/// Projects the registry-core suite pushes into (`library` exists already).
pub(crate) const TEST_PROJECTS: &[&str] = &[
    "team", "new", "a", "b", "c", "tls", "race", "other", "fresh", "busy", "no", "acme",
];

pub(crate) async fn create_test_projects(store: &dyn IdentityStore) {
    for name in TEST_PROJECTS {
        match store.create_project(&project(name), 1).await {
            Ok(_) | Err(MetadataError::Conflict(_)) => {}
            Err(e) => panic!("creating project {name}: {e}"),
        }
    }
}

fn project(name: &str) -> NewProject {
    NewProject {
        name: name.into(),
        ..NewProject::default()
    }
}

fn local_user(name: &str, admin: bool) -> NewUser {
    NewUser {
        name: name.into(),
        email: format!("{name}@example.com"),
        full_name: name.to_uppercase(),
        source: UserSource::Local,
        external_id: None,
        password_hash: Some(format!("hash-of-{name}")),
        admin,
    }
}

fn sort(field: &str, descending: bool) -> Sort {
    Sort {
        field: Some(field.into()),
        descending,
    }
}

pub async fn projects_hold_repositories<S: MetaStore + IdentityStore>(store: &S) {
    let library = store.project("library").await.unwrap().unwrap();
    assert!(library.public, "library is created public");

    // A repository can only be created in a project that exists.
    let orphan = repo("ghost/app");
    match store
        .link_new_blob(
            &orphan,
            &digest("x"),
            1,
            crate::StoredBytes::Unchecked,
            &change(),
        )
        .await
    {
        Err(MetadataError::ProjectUnknown(p)) => assert_eq!(p, "ghost"),
        other => panic!("expected ProjectUnknown, got {other:?}"),
    }
    assert!(!store.repository_exists(&orphan).await.unwrap());

    let labels = BTreeMap::from([("team".to_owned(), "infra".to_owned())]);
    let created = store
        .create_project(
            &NewProject {
                name: "ghost".into(),
                public: false,
                description: "spooky".into(),
                labels: labels.clone(),
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            created.public,
            created.description.as_str(),
            &created.labels
        ),
        (false, "spooky", &labels)
    );
    assert!(matches!(
        store.create_project(&project("ghost"), 11).await,
        Err(MetadataError::Conflict(_))
    ));
    store
        .link_new_blob(
            &orphan,
            &digest("x"),
            1,
            crate::StoredBytes::Unchecked,
            &change(),
        )
        .await
        .unwrap();
    store
        .link_new_blob(
            &repo("ghost/deep/app"),
            &digest("x"),
            1,
            crate::StoredBytes::Unchecked,
            &change(),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .project("ghost")
            .await
            .unwrap()
            .unwrap()
            .repository_count,
        2
    );

    let updated = store
        .update_project(
            "ghost",
            &ProjectPatch {
                public: Some(true),
                ..ProjectPatch::default()
            },
            20,
        )
        .await
        .unwrap();
    assert!(updated.public);
    assert_eq!(updated.description, "spooky", "unpatched fields stay");
    assert_eq!(updated.updated_at_ms, 20);
    assert!(matches!(
        store
            .update_project("nope", &ProjectPatch::default(), 20)
            .await,
        Err(MetadataError::ProjectUnknown(_))
    ));

    match store.delete_project("ghost").await {
        Err(MetadataError::Refused(message)) => assert!(message.contains("2 repositories")),
        other => panic!("expected a refusal, got {other:?}"),
    }
    store.create_project(&project("empty"), 30).await.unwrap();
    store.delete_project("empty").await.unwrap();
    assert_eq!(store.project("empty").await.unwrap(), None);
    assert!(matches!(
        store.delete_project("empty").await,
        Err(MetadataError::ProjectUnknown(_))
    ));
}

pub async fn project_listings_filter_sort_and_page<S: MetaStore + IdentityStore>(store: &S) {
    for (i, name) in ["l-alpha", "l-beta", "l-gamma", "l-delta"]
        .into_iter()
        .enumerate()
    {
        store
            .create_project(
                &NewProject {
                    name: name.into(),
                    public: i % 2 == 0,
                    labels: BTreeMap::from([("tier".to_owned(), format!("t{i}"))]),
                    ..NewProject::default()
                },
                100 + i as i64,
            )
            .await
            .unwrap();
    }
    let ours = ProjectFilter {
        name: Some("l-".into()),
        ..ProjectFilter::default()
    };
    let all = store
        .list_projects(&ours, &Sort::default(), Page::default())
        .await
        .unwrap();
    let names: Vec<&str> = all.items.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["l-alpha", "l-beta", "l-delta", "l-gamma"]);
    assert_eq!(all.total, 4);

    let page = store
        .list_projects(
            &ours,
            &sort("created_at", true),
            Page {
                offset: 1,
                limit: 2,
            },
        )
        .await
        .unwrap();
    let names: Vec<&str> = page.items.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["l-gamma", "l-beta"]);
    assert_eq!(page.total, 4);

    let filtered = store
        .list_projects(
            &ProjectFilter {
                name: Some("TA".into()),
                ..ProjectFilter::default()
            },
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap();
    let names: Vec<&str> = filtered.items.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["l-beta", "l-delta"]);

    let visible = store
        .list_projects(
            &ProjectFilter {
                public_or_named: Some(vec!["l-beta".into()]),
                ..ours.clone()
            },
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap();
    let names: Vec<&str> = visible.items.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["l-alpha", "l-beta", "l-gamma"]);

    let labelled = store
        .list_projects(
            &ProjectFilter {
                label: Some(("tier".into(), Some("t3".into()))),
                ..ProjectFilter::default()
            },
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(labelled.items.len(), 1);
    assert_eq!(labelled.items[0].name, "l-delta");

    // A wildcard in a filter is a literal character.
    let none = store
        .list_projects(
            &ProjectFilter {
                name: Some("%".into()),
                ..ProjectFilter::default()
            },
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(none.total, 0);

    assert!(matches!(
        store
            .list_projects(
                &ProjectFilter::default(),
                &sort("secret; DROP", false),
                Page::default()
            )
            .await,
        Err(MetadataError::Invalid(_))
    ));
}

pub async fn users_and_credentials<S: MetaStore + IdentityStore>(store: &S) {
    assert_eq!(store.count_admins().await.unwrap(), 0);
    let admin = store
        .create_user(&local_user("admin", true), 5)
        .await
        .unwrap();
    assert!(admin.admin);
    assert_eq!(admin.credentials_changed_at_ms, 5);
    assert_eq!(store.count_admins().await.unwrap(), 1);
    assert!(matches!(
        store.create_user(&local_user("admin", false), 6).await,
        Err(MetadataError::Conflict(_))
    ));
    store
        .create_user(&local_user("bob", false), 7)
        .await
        .unwrap();

    let changed = store
        .update_user(
            "bob",
            &UserPatch {
                password_hash: Some("new-hash".into()),
                ..UserPatch::default()
            },
            50,
        )
        .await
        .unwrap();
    assert_eq!(changed.password_hash.as_deref(), Some("new-hash"));
    assert_eq!(changed.credentials_changed_at_ms, 50);
    let renamed = store
        .update_user(
            "bob",
            &UserPatch {
                full_name: Some("Robert".into()),
                ..UserPatch::default()
            },
            60,
        )
        .await
        .unwrap();
    assert_eq!(renamed.full_name, "Robert");
    assert_eq!(
        renamed.credentials_changed_at_ms, 50,
        "only a new password or disabling refuses old tokens"
    );
    let disabled = store
        .update_user(
            "bob",
            &UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            },
            70,
        )
        .await
        .unwrap();
    assert!(disabled.disabled);
    assert_eq!(disabled.credentials_changed_at_ms, 70);

    let listed = store
        .list_users(
            &UserFilter {
                name: Some("EXAMPLE.com".into()),
                admin: Some(false),
                ..UserFilter::default()
            },
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(listed.total, 1);
    assert_eq!(listed.items[0].name, "bob");

    // Directory users: created at their first sign-in, refreshed later; a
    // local user's name cannot be taken over by the directory.
    let ldap = NewUser {
        source: UserSource::Ldap,
        external_id: Some("uid=carol,ou=people,dc=example,dc=org".into()),
        password_hash: None,
        ..local_user("carol", false)
    };
    let carol = store
        .sync_directory_user(&ldap, &["cn=devs".into(), "cn=ops".into()], 80)
        .await
        .unwrap();
    assert_eq!(carol.source, UserSource::Ldap);
    assert_eq!(carol.last_login_at_ms, Some(80));
    let again = store
        .sync_directory_user(&ldap, &["cn=ops".into()], 90)
        .await
        .unwrap();
    assert_eq!(again.id, carol.id);
    assert!(matches!(
        store
            .sync_directory_user(
                &NewUser {
                    source: UserSource::Ldap,
                    ..local_user("admin", false)
                },
                &[],
                95
            )
            .await,
        Err(MetadataError::Conflict(_))
    ));

    store.delete_user("bob").await.unwrap();
    assert_eq!(store.user("bob").await.unwrap(), None);
    assert!(matches!(
        store.delete_user("bob").await,
        Err(MetadataError::NotFound(_))
    ));
}

pub async fn memberships_by_user_group_and_repository<S: MetaStore + IdentityStore>(store: &S) {
    store
        .create_user(&local_user("dev", false), 1)
        .await
        .unwrap();
    let ldap = NewUser {
        source: UserSource::Ldap,
        password_hash: None,
        ..local_user("lena", false)
    };
    store
        .sync_directory_user(&ldap, &["cn=readers,dc=example".into()], 1)
        .await
        .unwrap();

    let whole = store
        .add_member(
            "team",
            &NewMember {
                member: MemberOf::User("dev".into()),
                repository: None,
                role: Role::Guest,
            },
            2,
        )
        .await
        .unwrap();
    store
        .add_member(
            "team",
            &NewMember {
                member: MemberOf::User("dev".into()),
                repository: Some("team/app".into()),
                role: Role::Developer,
            },
            3,
        )
        .await
        .unwrap();
    store
        .add_member(
            "library",
            &NewMember {
                member: MemberOf::Group("cn=readers,dc=example".into()),
                repository: None,
                role: Role::LimitedGuest,
            },
            4,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .add_member(
                "team",
                &NewMember {
                    member: MemberOf::User("dev".into()),
                    repository: None,
                    role: Role::Maintainer,
                },
                5
            )
            .await,
        Err(MetadataError::Conflict(_))
    ));
    assert!(matches!(
        store
            .add_member(
                "team",
                &NewMember {
                    member: MemberOf::User("nobody".into()),
                    repository: None,
                    role: Role::Guest,
                },
                5
            )
            .await,
        Err(MetadataError::NotFound(_))
    ));
    assert!(matches!(
        store
            .add_member(
                "ghost",
                &NewMember {
                    member: MemberOf::User("dev".into()),
                    repository: None,
                    role: Role::Guest,
                },
                5
            )
            .await,
        Err(MetadataError::ProjectUnknown(_))
    ));

    let mut mine = store.memberships("dev").await.unwrap();
    mine.sort_by(|a, b| a.repository.cmp(&b.repository));
    assert_eq!(
        mine,
        vec![
            Membership {
                project: "team".into(),
                repository: None,
                role: Role::Guest
            },
            Membership {
                project: "team".into(),
                repository: Some("team/app".into()),
                role: Role::Developer
            },
        ]
    );
    assert_eq!(
        store.memberships("lena").await.unwrap(),
        vec![Membership {
            project: "library".into(),
            repository: None,
            role: Role::LimitedGuest
        }]
    );
    assert_eq!(store.memberships("stranger").await.unwrap(), vec![]);

    let listed = store
        .list_members(
            "team",
            &MemberFilter::default(),
            &sort("created_at", true),
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(listed.total, 2);
    assert_eq!(listed.items[0].repository.as_deref(), Some("team/app"));
    let guests = store
        .list_members(
            "team",
            &MemberFilter {
                role: Some(Role::Guest),
                ..MemberFilter::default()
            },
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(guests.items, vec![whole.clone()]);
    assert!(matches!(
        store
            .list_members(
                "ghost",
                &MemberFilter::default(),
                &Sort::default(),
                Page::default()
            )
            .await,
        Err(MetadataError::ProjectUnknown(_))
    ));

    let promoted = store
        .update_member("team", whole.id, Role::Maintainer)
        .await
        .unwrap();
    assert_eq!(promoted.role, Role::Maintainer);
    assert!(matches!(
        store.update_member("library", whole.id, Role::Guest).await,
        Err(MetadataError::NotFound(_))
    ));
    store.remove_member("team", whole.id).await.unwrap();
    assert_eq!(store.memberships("dev").await.unwrap().len(), 1);

    // A user's memberships go with the user; a project's with the project.
    store.delete_user("dev").await.unwrap();
    store.create_project(&project("gone"), 6).await.unwrap();
    store
        .add_member(
            "gone",
            &NewMember {
                member: MemberOf::Group("cn=x".into()),
                repository: None,
                role: Role::Guest,
            },
            7,
        )
        .await
        .unwrap();
    store.delete_project("gone").await.unwrap();
    store.create_project(&project("gone"), 8).await.unwrap();
    assert_eq!(
        store
            .list_members(
                "gone",
                &MemberFilter::default(),
                &Sort::default(),
                Page::default()
            )
            .await
            .unwrap()
            .total,
        0
    );
}

pub async fn robots_and_their_secrets<S: MetaStore + IdentityStore>(store: &S) {
    let permissions = vec![RobotPermission {
        project: "team".into(),
        repository: Some("app".into()),
        actions: RepoActions::PULL.with(RepoActions::PUSH),
    }];
    let robot = store
        .create_robot(
            &NewRobot {
                name: "robot$team+ci".into(),
                project: Some("team".into()),
                description: "CI".into(),
                secret_hash: "h1".into(),
                permissions: permissions.clone(),
                expires_at_ms: Some(1000),
                created_by: "admin".into(),
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(robot.project.as_deref(), Some("team"));
    assert_eq!(robot.permissions, permissions);
    assert_eq!(robot.expires_at_ms, Some(1000));
    store
        .create_robot(
            &NewRobot {
                name: "robot$puller".into(),
                project: None,
                description: String::new(),
                secret_hash: "h2".into(),
                permissions: vec![],
                expires_at_ms: None,
                created_by: "admin".into(),
            },
            11,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_robot(
                &NewRobot {
                    name: "robot$puller".into(),
                    project: None,
                    description: String::new(),
                    secret_hash: "h3".into(),
                    permissions: vec![],
                    expires_at_ms: None,
                    created_by: "admin".into(),
                },
                12
            )
            .await,
        Err(MetadataError::Conflict(_))
    ));

    let refreshed = store
        .update_robot(
            "robot$team+ci",
            &RobotPatch {
                secret_hash: Some("h4".into()),
                expires_at_ms: Some(None),
                ..RobotPatch::default()
            },
            20,
        )
        .await
        .unwrap();
    assert_eq!(refreshed.secret_hash, "h4");
    assert_eq!(refreshed.expires_at_ms, None);
    assert_eq!(refreshed.credentials_changed_at_ms, 20);

    let system = store
        .list_robots(
            &RobotFilter {
                project: Some(None),
                ..RobotFilter::default()
            },
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(system.items.len(), 1);
    assert_eq!(system.items[0].name, "robot$puller");
    let of_team = store
        .list_robots(
            &RobotFilter {
                project: Some(Some("team".into())),
                ..RobotFilter::default()
            },
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(of_team.items.len(), 1);

    store.delete_robot("robot$puller").await.unwrap();
    assert_eq!(store.robot("robot$puller").await.unwrap(), None);
}

pub async fn signing_keys_rotate<S: MetaStore + IdentityStore>(store: &S) {
    let key = |id: &str, at: i64| StoredKey {
        id: id.into(),
        secret: id.as_bytes().to_vec(),
        created_at_ms: at,
        retired_at_ms: None,
    };
    let first = store.ensure_signing_key(&key("k1", 1)).await.unwrap();
    assert_eq!(first, vec![key("k1", 1)]);
    // Another node starting later keeps the key that exists.
    let second = store.ensure_signing_key(&key("k2", 2)).await.unwrap();
    assert_eq!(second, vec![key("k1", 1)]);

    store.rotate_signing_key(&key("k3", 3), 3).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], key("k3", 3));
    assert_eq!(keys[1].id, "k1");
    assert_eq!(keys[1].retired_at_ms, Some(3));

    assert_eq!(store.prune_signing_keys(3).await.unwrap(), 0);
    assert_eq!(store.prune_signing_keys(4).await.unwrap(), 1);
    assert_eq!(store.signing_keys().await.unwrap(), vec![key("k3", 3)]);
}

pub async fn audit_log_and_login_failures<S: MetaStore + IdentityStore>(store: &S) {
    let record = |at: i64, actor: &str, operation: &str, success: bool| AuditRecord {
        occurred_at_ms: at,
        actor: actor.into(),
        address: "192.0.2.1".into(),
        operation: operation.into(),
        resource_type: "artifact".into(),
        resource: format!("team/app@{at}"),
        project: Some("team".into()),
        success,
        detail: String::new(),
    };
    store
        .append_audit(&[
            record(1, "alice", "push", true),
            record(2, "bob", "pull", true),
            record(3, "alice", "login", false),
        ])
        .await
        .unwrap();
    let all = store
        .list_audit(&AuditFilter::default(), &Sort::default(), Page::default())
        .await
        .unwrap();
    let times: Vec<i64> = all.items.iter().map(|e| e.record.occurred_at_ms).collect();
    assert_eq!(times, [3, 2, 1], "newest first");
    assert_eq!(all.items[2].record, record(1, "alice", "push", true));
    let alice_ok = store
        .list_audit(
            &AuditFilter {
                actor: Some("alice".into()),
                success: Some(true),
                resource: Some("team/app@".into()),
                ..AuditFilter::default()
            },
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(alice_ok.total, 1);
    let window = store
        .list_audit(
            &AuditFilter {
                from_ms: Some(2),
                to_ms: Some(3),
                ..AuditFilter::default()
            },
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(window.items.len(), 1);
    assert_eq!(store.prune_audit(3).await.unwrap(), 2);

    let window = 60_000;
    assert_eq!(store.login_failures("bob|h", 0, window).await.unwrap(), 0);
    assert_eq!(
        store
            .record_login_failure("bob|h", 1000, window)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .record_login_failure("bob|h", 2000, window)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.login_failures("bob|h", 3000, window).await.unwrap(),
        2
    );
    assert_eq!(
        store
            .login_failures("bob|h", 2000 + window + 1, window)
            .await
            .unwrap(),
        0,
        "old failures are forgotten"
    );
    assert_eq!(
        store
            .record_login_failure("bob|h", 2000 + window + 1, window)
            .await
            .unwrap(),
        1
    );
    store.clear_login_failures("bob|h").await.unwrap();
    assert_eq!(
        store.login_failures("bob|h", 3000, window).await.unwrap(),
        0
    );
}

pub async fn browsing_repositories_artifacts_and_tags<S: MetaStore + IdentityStore>(store: &S) {
    use crate::{ArtifactFilter, Pull, RepositoryFilter};
    let app = repo("team/app");
    let config = digest("config");
    let layer = digest("layer");
    store
        .link_new_blob(&app, &config, 10, crate::StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    store
        .link_new_blob(&app, &layer, 1000, crate::StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let m1 = super::manifest(
        &app,
        "m1",
        &[(&config, 10), (&layer, 1000)],
        &[],
        &["v1", "latest"],
    );
    store.put_manifest(m1, &change()).await.unwrap();
    let later = crate::Change {
        at_ms: change().at_ms + 1000,
        ..change()
    };
    let m2 = super::manifest(&app, "m2", &[(&config, 10)], &[], &[]);
    store.put_manifest(m2, &later).await.unwrap();
    store
        .link_new_blob(
            &repo("team/web"),
            &config,
            10,
            crate::StoredBytes::Unchecked,
            &change(),
        )
        .await
        .unwrap();

    let repos = store
        .list_repositories_in(
            "team",
            &RepositoryFilter::default(),
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap();
    let names: Vec<&str> = repos.items.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["team/app", "team/web"]);
    assert_eq!(
        (repos.items[0].artifact_count, repos.items[0].tag_count),
        (2, 2)
    );
    assert_eq!(repos.items[0].pushed_at_ms, Some(later.at_ms));
    assert_eq!(repos.items[1].pushed_at_ms, None);
    let only = store
        .list_repositories_in(
            "team",
            &RepositoryFilter {
                only: Some(vec!["team/web".into()]),
                ..RepositoryFilter::default()
            },
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(only.total, 1);

    let artifacts = store
        .list_artifacts(
            &app,
            &ArtifactFilter::default(),
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(artifacts.total, 2);
    assert_eq!(artifacts.items[0].digest, digest("m2"), "newest first");
    assert_eq!(artifacts.items[0].tags, Vec::<String>::new());
    assert_eq!(artifacts.items[1].tags, ["latest", "v1"]);
    assert_eq!(
        artifacts.items[1].size,
        2 + 10 + 1000,
        "manifest, config and layer"
    );
    let tagged = store
        .list_artifacts(
            &app,
            &ArtifactFilter {
                tagged: Some(true),
                ..ArtifactFilter::default()
            },
            &Sort::default(),
            Page::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tagged.total, 1);
    assert_eq!(
        store
            .list_artifacts(
                &repo("team/none"),
                &ArtifactFilter::default(),
                &Sort::default(),
                Page::default()
            )
            .await
            .unwrap(),
        None
    );

    store
        .record_pulls(&[
            Pull {
                repository: app.clone(),
                digest: digest("m1"),
                at_ms: 5000,
                count: 1,
                actor: "puller".to_owned(),
            },
            Pull {
                repository: app.clone(),
                digest: digest("m1"),
                at_ms: 4000,
                count: 1,
                actor: "puller".to_owned(),
            },
            Pull {
                repository: repo("team/gone"),
                digest: digest("m1"),
                at_ms: 6000,
                count: 1,
                actor: "puller".to_owned(),
            },
        ])
        .await
        .unwrap();
    let tags = store
        .list_tag_info(&app, None, &sort("name", true), Page::default())
        .await
        .unwrap()
        .unwrap();
    let names: Vec<&str> = tags.items.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["v1", "latest"]);
    assert_eq!(
        tags.items[0].pulled_at_ms,
        Some(5000),
        "an older pull does not overwrite a newer one"
    );
    assert_eq!(tags.items[0].digest, digest("m1"));
    let filtered = store
        .list_tag_info(&app, Some("LAT"), &Sort::default(), Page::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(filtered.total, 1);
}
