//! Access control through real HTTP: the permission matrix over every role
//! and action in a public and a private project, repository grants, robots,
//! tokens, throttling, the audit log and LDAP.
//!
//! The expected outcomes are written out here from the documented matrix
//! (`docs/access-control.md`), not computed with the `auth` crate: the test
//! is an oracle for the code, not a copy of it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

/// Who makes a request.
#[derive(Clone, Copy, Debug)]
pub enum As<'a> {
    Anonymous,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

impl As<'_> {
    fn apply(self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            As::Anonymous => request,
            As::Basic(name, secret) => request.header("authorization", basic(name, secret)),
            As::Bearer(token) => request.header("authorization", format!("Bearer {token}")),
        }
    }
}

pub const PASSWORD: &str = "correct horse battery";

/// A request to `path` as `who`; the status and the JSON body (or Null).
pub async fn call(
    s: &TestServer,
    who: As<'_>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = who.apply(anonymous_client().request(method, s.url(path)));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// As the administrator, expecting `status`.
pub async fn admin(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: StatusCode,
) -> Value {
    let (got, json) = call(s, As::Basic("admin", ADMIN_PASSWORD), method, path, body).await;
    assert_eq!(got, status, "{path}: {json}");
    json
}

pub async fn create_user(s: &TestServer, name: &str) {
    admin(
        s,
        Method::POST,
        "/api/v1/users",
        Some(json!({"name": name, "password": PASSWORD, "email": format!("{name}@example.com")})),
        StatusCode::CREATED,
    )
    .await;
}

pub async fn create_project(s: &TestServer, name: &str, public: bool) {
    admin(
        s,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": name, "public": public})),
        StatusCode::CREATED,
    )
    .await;
}

pub async fn add_member(
    s: &TestServer,
    project: &str,
    member: Value,
    repository: Option<&str>,
    role: &str,
) {
    let mut body = json!({"member": member, "role": role});
    if let Some(r) = repository {
        body["repository"] = json!(r);
    }
    admin(
        s,
        Method::POST,
        &format!("/api/v1/projects/{project}/members"),
        Some(body),
        StatusCode::CREATED,
    )
    .await;
}

/// Pushes a small blob to `repo` as `who` (a push action); the status.
async fn push_blob(s: &TestServer, who: As<'_>, repo: &str, content: &[u8]) -> StatusCode {
    let digest = sha256(content);
    let request = anonymous_client()
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
        .header("content-type", "application/octet-stream")
        .body(content.to_vec());
    who.apply(request).send().await.unwrap().status()
}

async fn status(s: &TestServer, who: As<'_>, method: Method, path: &str) -> StatusCode {
    call(s, who, method, path, None).await.0
}

const ROLES: [&str; 5] = [
    "limited-guest",
    "guest",
    "developer",
    "maintainer",
    "project-admin",
];

/// Which subjects may do what; roles by index into [`ROLES`].
struct Expect {
    /// Roles that may; the administrator always may.
    roles: &'static [usize],
    /// Anyone may when the project is public.
    public: bool,
}

const LG: usize = 0;
const G: usize = 1;
const DEV: usize = 2;
const MNT: usize = 3;
const PA: usize = 4;

#[tokio::test]
async fn the_permission_matrix_over_every_role_action_and_visibility() {
    let s = TestServer::start_with(|c| c.auth.auto_create_projects = false).await;
    for role in ROLES {
        create_user(&s, role).await;
    }
    create_user(&s, "outsider").await;
    for (project, public) in [("open", true), ("closed", false)] {
        create_project(&s, project, public).await;
        for role in ROLES {
            add_member(&s, project, json!({"user": role}), None, role).await;
        }
        s.push_image(&format!("{project}/app"), "1", &[b"matrix layer"])
            .await;
    }

    // (action, expectation, how to try it: returns the status)
    let actions: &[(&str, Expect)] = &[
        (
            "pull",
            Expect {
                roles: &[LG, G, DEV, MNT, PA],
                public: true,
            },
        ),
        (
            "list tags",
            Expect {
                roles: &[LG, G, DEV, MNT, PA],
                public: true,
            },
        ),
        (
            "push",
            Expect {
                roles: &[DEV, MNT, PA],
                public: false,
            },
        ),
        (
            "delete",
            Expect {
                roles: &[MNT, PA],
                public: false,
            },
        ),
        (
            "see project",
            Expect {
                roles: &[LG, G, DEV, MNT, PA],
                public: true,
            },
        ),
        (
            "read members",
            Expect {
                roles: &[G, DEV, MNT, PA],
                public: false,
            },
        ),
        (
            "read audit log",
            Expect {
                roles: &[G, DEV, MNT, PA],
                public: false,
            },
        ),
        (
            "manage robots",
            Expect {
                roles: &[MNT, PA],
                public: false,
            },
        ),
        (
            "update project",
            Expect {
                roles: &[PA],
                public: false,
            },
        ),
    ];
    let mut subjects: Vec<(&str, As)> = vec![
        ("anonymous", As::Anonymous),
        ("outsider", As::Basic("outsider", PASSWORD)),
    ];
    for role in ROLES {
        subjects.push((role, As::Basic(role, PASSWORD)));
    }
    subjects.push(("admin", As::Basic("admin", ADMIN_PASSWORD)));

    let mut checked = 0;
    let mut n = 0u32;
    for (project, public) in [("open", true), ("closed", false)] {
        let repo = format!("{project}/app");
        for (action, expect) in actions {
            for (who_name, who) in &subjects {
                n += 1;
                let allowed = *who_name == "admin"
                    || ROLES
                        .iter()
                        .position(|r| r == who_name)
                        .is_some_and(|i| expect.roles.contains(&i))
                    || (public && expect.public);
                let got = match *action {
                    "pull" => {
                        status(&s, *who, Method::GET, &format!("/v2/{repo}/manifests/1")).await
                    }
                    "list tags" => {
                        status(&s, *who, Method::GET, &format!("/v2/{repo}/tags/list")).await
                    }
                    "push" => push_blob(&s, *who, &repo, format!("blob {n}").as_bytes()).await,
                    "delete" => {
                        let tag = format!("d{n}");
                        let (manifest, _) = s.push_image(&repo, &tag, &[b"matrix layer"]).await;
                        assert!(!manifest.is_empty());
                        status(
                            &s,
                            *who,
                            Method::DELETE,
                            &format!("/v2/{repo}/manifests/{tag}"),
                        )
                        .await
                    }
                    "see project" => {
                        status(
                            &s,
                            *who,
                            Method::GET,
                            &format!("/api/v1/projects/{project}"),
                        )
                        .await
                    }
                    "read members" => {
                        status(
                            &s,
                            *who,
                            Method::GET,
                            &format!("/api/v1/projects/{project}/members"),
                        )
                        .await
                    }
                    "read audit log" => {
                        status(
                            &s,
                            *who,
                            Method::GET,
                            &format!("/api/v1/projects/{project}/audit-logs"),
                        )
                        .await
                    }
                    "manage robots" => {
                        status(
                            &s,
                            *who,
                            Method::GET,
                            &format!("/api/v1/projects/{project}/robots"),
                        )
                        .await
                    }
                    "update project" => {
                        call(
                            &s,
                            *who,
                            Method::PATCH,
                            &format!("/api/v1/projects/{project}"),
                            Some(json!({"description": format!("changed by {who_name}")})),
                        )
                        .await
                        .0
                    }
                    other => unreachable!("{other}"),
                };
                let expected: &[StatusCode] = if allowed {
                    if *action == "push" {
                        &[StatusCode::CREATED]
                    } else if *action == "delete" {
                        &[StatusCode::ACCEPTED]
                    } else {
                        &[StatusCode::OK]
                    }
                } else if !public && *action == "see project" {
                    // A private project is invisible to those outside it.
                    &[StatusCode::NOT_FOUND]
                } else if *who_name == "anonymous" {
                    &[StatusCode::UNAUTHORIZED]
                } else if !public
                    && *who_name == "outsider"
                    && !matches!(*action, "pull" | "list tags" | "push" | "delete")
                {
                    &[StatusCode::NOT_FOUND]
                } else {
                    &[StatusCode::FORBIDDEN]
                };
                assert!(
                    expected.contains(&got),
                    "{who_name} {action} in {project} ({}): got {got}, expected {expected:?}",
                    if public { "public" } else { "private" }
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * actions.len() * subjects.len());
}

#[tokio::test]
async fn repository_grants_allow_one_repository_only() {
    let s = TestServer::start().await;
    create_user(&s, "ci").await;
    create_project(&s, "team", false).await;
    add_member(&s, "team", json!({"user": "ci"}), Some("app"), "developer").await;
    let ci = As::Basic("ci", PASSWORD);
    assert_eq!(
        push_blob(&s, ci, "team/app", b"granted").await,
        StatusCode::CREATED
    );
    assert_eq!(
        push_blob(&s, ci, "team/web", b"not granted").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        push_blob(&s, ci, "team/app/sub", b"not granted").await,
        StatusCode::FORBIDDEN
    );
    s.push_image("team/web", "1", &[b"web"]).await;
    assert_eq!(
        status(&s, ci, Method::GET, "/v2/team/web/manifests/1").await,
        StatusCode::FORBIDDEN
    );
    // The grant gives no project-wide powers.
    assert_eq!(
        status(&s, ci, Method::GET, "/api/v1/projects/team/members").await,
        StatusCode::FORBIDDEN
    );
    // The catalog shows what the caller may see, and only that.
    let (_, catalog) = call(&s, ci, Method::GET, "/v2/_catalog", None).await;
    assert_eq!(catalog["repositories"], json!(["team/app"]));
    let (_, current) = call(&s, ci, Method::GET, "/api/v1/users/current", None).await;
    assert_eq!(
        current["memberships"],
        json!([{"project": "team", "repository": "app", "role": "developer"}])
    );
}

#[tokio::test]
async fn pushing_to_a_missing_project_says_so() {
    let s = TestServer::start_with(|c| c.auth.auto_create_projects = false).await;
    let response = s
        .request(Method::POST, "/v2/nowhere/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let body = assert_error(response, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("project \"nowhere\" does not exist"),
        "{message}"
    );
    // With auto-creation, an administrator's push creates it (private).
    let s = TestServer::start().await;
    s.push_image("fresh/app", "1", &[b"x"]).await;
    let project = admin(
        &s,
        Method::GET,
        "/api/v1/projects/fresh",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(project["public"], false);
    assert_eq!(project["repository_count"], 1);
}

#[tokio::test]
async fn mounts_only_from_repositories_the_caller_may_pull() {
    let s = TestServer::start().await;
    create_user(&s, "dev").await;
    create_project(&s, "mine", false).await;
    create_project(&s, "secret", false).await;
    add_member(&s, "mine", json!({"user": "dev"}), None, "developer").await;
    let digest = s.push_blob("secret/app", b"secret layer").await;
    let dev = As::Basic("dev", PASSWORD);
    let mount = format!("/v2/mine/app/blobs/uploads/?mount={digest}&from=secret/app");
    // Not mounted: a plain upload session starts instead.
    assert_eq!(
        status(&s, dev, Method::POST, &mount).await,
        StatusCode::ACCEPTED
    );
    let automount = format!("/v2/mine/app/blobs/uploads/?mount={digest}");
    assert_eq!(
        status(&s, dev, Method::POST, &automount).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        status(
            &s,
            dev,
            Method::HEAD,
            &format!("/v2/mine/app/blobs/{digest}")
        )
        .await,
        StatusCode::NOT_FOUND
    );
    // Once the developer may pull the source, the mount works.
    add_member(&s, "secret", json!({"user": "dev"}), None, "guest").await;
    assert_eq!(
        status(&s, dev, Method::POST, &mount).await,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn robots_have_scopes_expiry_and_refreshable_secrets() {
    let s = TestServer::start().await;
    create_project(&s, "team", false).await;
    s.push_image("team/web", "1", &[b"web"]).await;
    let created = admin(
        &s,
        Method::POST,
        "/api/v1/projects/team/robots",
        Some(json!({"name": "ci", "permissions": [
            {"actions": ["pull"]},
            {"repository": "app", "actions": ["push"]},
        ]})),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["robot"]["name"], "robot$team+ci");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let robot = As::Basic("robot$team+ci", &secret);
    assert_eq!(
        push_blob(&s, robot, "team/app", b"robot push").await,
        StatusCode::CREATED
    );
    assert_eq!(
        push_blob(&s, robot, "team/web", b"robot push").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&s, robot, Method::GET, "/v2/team/web/manifests/1").await,
        StatusCode::OK
    );
    assert_eq!(
        status(&s, robot, Method::DELETE, "/v2/team/web/manifests/1").await,
        StatusCode::FORBIDDEN
    );
    // Robots cannot use the management API beyond reading who they are.
    assert_eq!(
        status(&s, robot, Method::GET, "/api/v1/projects/team/members").await,
        StatusCode::FORBIDDEN
    );
    // The secret is stored hashed: nothing shows it again.
    let shown = admin(
        &s,
        Method::GET,
        "/api/v1/projects/team/robots/ci",
        None,
        StatusCode::OK,
    )
    .await;
    assert!(!shown.to_string().contains(&secret));

    // A new secret replaces the old one at once.
    let refreshed = admin(
        &s,
        Method::POST,
        "/api/v1/projects/team/robots/ci/secret",
        None,
        StatusCode::OK,
    )
    .await;
    let new_secret = refreshed["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        status(&s, robot, Method::GET, "/v2/team/web/manifests/1").await,
        StatusCode::UNAUTHORIZED
    );
    let robot = As::Basic("robot$team+ci", &new_secret);
    assert_eq!(
        status(&s, robot, Method::GET, "/v2/team/web/manifests/1").await,
        StatusCode::OK
    );

    // Disabled, then expired: refused.
    admin(
        &s,
        Method::PATCH,
        "/api/v1/projects/team/robots/ci",
        Some(json!({"disabled": true})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        status(&s, robot, Method::GET, "/v2/team/web/manifests/1").await,
        StatusCode::UNAUTHORIZED
    );
    admin(
        &s,
        Method::PATCH,
        "/api/v1/projects/team/robots/ci",
        Some(json!({"disabled": false, "expires_at": "2001-01-01T00:00:00Z"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        status(&s, robot, Method::GET, "/v2/team/web/manifests/1").await,
        StatusCode::UNAUTHORIZED
    );
    admin(
        &s,
        Method::PATCH,
        "/api/v1/projects/team/robots/ci",
        Some(json!({"expires_at": null})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        status(&s, robot, Method::GET, "/v2/team/web/manifests/1").await,
        StatusCode::OK
    );

    // A project robot's permissions stay in its project; names cannot
    // collide with users ('$' is in no user name).
    let (code, _) = call(
        &s,
        As::Basic("admin", ADMIN_PASSWORD),
        Method::POST,
        "/api/v1/users",
        Some(json!({"name": "robot$team+ci", "password": PASSWORD})),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    // A system robot may span projects.
    create_project(&s, "other", false).await;
    s.push_image("other/x", "1", &[b"x"]).await;
    let system = admin(
        &s,
        Method::POST,
        "/api/v1/robots",
        Some(json!({"name": "puller", "permissions": [{"project": "*", "actions": ["pull"]}]})),
        StatusCode::CREATED,
    )
    .await;
    let puller = As::Basic("robot$puller", system["secret"].as_str().unwrap());
    assert_eq!(
        status(&s, puller, Method::GET, "/v2/other/x/manifests/1").await,
        StatusCode::OK
    );
    assert_eq!(
        status(&s, puller, Method::GET, "/v2/team/web/manifests/1").await,
        StatusCode::OK
    );
    assert_eq!(
        push_blob(&s, puller, "team/web", b"no").await,
        StatusCode::FORBIDDEN
    );
}

async fn token(s: &TestServer, who: As<'_>, query: &str) -> (StatusCode, Value) {
    call(
        s,
        who,
        Method::GET,
        &format!("/auth/token?service=wharf&{query}"),
        None,
    )
    .await
}

#[tokio::test]
async fn tokens_grant_exactly_what_is_allowed_and_refresh() {
    let s = TestServer::start().await;
    create_user(&s, "dev").await;
    create_project(&s, "team", false).await;
    add_member(&s, "team", json!({"user": "dev"}), None, "developer").await;
    s.push_image("team/app", "1", &[b"x"]).await;
    let dev = As::Basic("dev", PASSWORD);

    // Asking for more than allowed is no error: the token holds the intersection.
    let (code, body) = token(&s, dev, "scope=repository:team/app:pull,push,delete").await;
    assert_eq!(code, StatusCode::OK);
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(body["token"], body["access_token"]);
    assert!(body["expires_in"].as_u64().unwrap() >= 60);
    assert!(body.get("refresh_token").is_none());
    let bearer = As::Bearer(&access);
    assert_eq!(
        status(&s, bearer, Method::GET, "/v2/team/app/manifests/1").await,
        StatusCode::OK
    );
    assert_eq!(
        push_blob(&s, bearer, "team/app", b"with a token").await,
        StatusCode::CREATED
    );
    // Delete was not granted (developer); the answer is a plain denial.
    assert_eq!(
        status(&s, bearer, Method::DELETE, "/v2/team/app/manifests/1").await,
        StatusCode::FORBIDDEN
    );
    // Another repository was not asked for: 401 with the scope to ask for.
    let response = anonymous_client()
        .get(s.url("/v2/team/other/tags/list"))
        .header("authorization", format!("Bearer {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = header(&response, "www-authenticate");
    assert!(challenge.starts_with("Bearer realm=\""), "{challenge}");
    assert!(
        challenge.contains("/auth/token\",service=\"wharf\",scope=\"repository:team/other:pull\""),
        "{challenge}"
    );

    // A forged or foreign token is refused.
    let mut forged = access.clone();
    forged.insert(forged.len() - 5, 'x');
    assert_eq!(
        status(
            &s,
            As::Bearer(&forged),
            Method::GET,
            "/v2/team/app/manifests/1"
        )
        .await,
        StatusCode::UNAUTHORIZED
    );

    // Anonymous tokens: public pulls only.
    let (_, anon) = token(
        &s,
        As::Anonymous,
        "scope=repository:library/x:pull&scope=repository:team/app:pull",
    )
    .await;
    let anon_token = anon["token"].as_str().unwrap();
    assert!(anon.get("refresh_token").is_none());
    assert_eq!(
        status(
            &s,
            As::Bearer(anon_token),
            Method::GET,
            "/v2/team/app/manifests/1"
        )
        .await,
        StatusCode::UNAUTHORIZED
    );

    // offline_token=true: a refresh token, redeemed with POST.
    let (_, offline) = token(
        &s,
        dev,
        "scope=repository:team/app:pull&offline_token=true&client_id=test",
    )
    .await;
    let refresh = offline["refresh_token"].as_str().unwrap().to_owned();
    let exchange = |refresh: String| {
        let s = &s;
        async move {
            let response = anonymous_client()
                .post(s.url("/auth/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("grant_type=refresh_token&service=wharf&client_id=test&scope=repository%3Ateam%2Fapp%3Apull&refresh_token={refresh}"))
                .send()
                .await
                .unwrap();
            let code = response.status();
            (code, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (code, renewed) = exchange(refresh.clone()).await;
    assert_eq!(code, StatusCode::OK, "{renewed}");
    let renewed_access = renewed["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        status(
            &s,
            As::Bearer(&renewed_access),
            Method::GET,
            "/v2/team/app/manifests/1"
        )
        .await,
        StatusCode::OK
    );
    // A refresh token is not an access token.
    assert_eq!(
        status(
            &s,
            As::Bearer(&refresh),
            Method::GET,
            "/v2/team/app/manifests/1"
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    // The password grant, as docker sends it.
    let response = anonymous_client()
        .post(s.url("/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=password&service=wharf&client_id=test&access_type=offline&username=dev&password={}&scope=repository%3Ateam%2Fapp%3Apull", PASSWORD.replace(' ', "+")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.json::<Value>().await.unwrap()["refresh_token"].is_string());

    // Rotating the signing key logs nobody out...
    let rotated = admin(
        &s,
        Method::POST,
        "/api/v1/system/signing-key/rotate",
        None,
        StatusCode::OK,
    )
    .await;
    assert!(rotated["key_id"].is_string());
    assert_eq!(
        status(
            &s,
            As::Bearer(&renewed_access),
            Method::GET,
            "/v2/team/app/manifests/1"
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(exchange(refresh.clone()).await.0, StatusCode::OK);
    // ...but a new password ends every refresh token issued before it.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    admin(
        &s,
        Method::PUT,
        "/api/v1/users/dev/password",
        Some(json!({"new_password": "another fine password"})),
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(exchange(refresh).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn anonymous_requests_are_challenged_and_public_pulls_work() {
    let s = TestServer::start().await;
    s.push_image("library/app", "1.0", &[b"public"]).await;
    let response = anonymous_client().get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = header(&response, "www-authenticate");
    assert!(
        challenge.starts_with("Bearer realm=\"http://"),
        "{challenge}"
    );
    assert_eq!(
        status(
            &s,
            As::Anonymous,
            Method::GET,
            "/v2/library/app/manifests/1.0"
        )
        .await,
        StatusCode::OK
    );
    let response = anonymous_client()
        .post(s.url("/v2/library/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        header(&response, "www-authenticate")
            .contains("scope=\"repository:library/app:pull,push\"")
    );
    let (_, catalog) = call(&s, As::Anonymous, Method::GET, "/v2/_catalog", None).await;
    assert_eq!(catalog["repositories"], json!(["library/app"]));
}

#[tokio::test]
async fn repeated_failed_sign_ins_are_throttled() {
    let s = TestServer::start_with(|c| {
        c.auth.max_failed_logins = 3;
        c.auth.failed_login_window_seconds = 60;
    })
    .await;
    create_user(&s, "victim").await;
    for _ in 0..3 {
        assert_eq!(
            status(
                &s,
                As::Basic("victim", "wrong password"),
                Method::GET,
                "/v2/"
            )
            .await,
            StatusCode::UNAUTHORIZED
        );
    }
    let response = As::Basic("victim", PASSWORD)
        .apply(anonymous_client().get(s.url("/v2/")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after"), "60");
    // Other names are unaffected.
    assert_eq!(
        status(&s, As::Basic("admin", ADMIN_PASSWORD), Method::GET, "/v2/").await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_audit_log_records_who_did_what_from_where() {
    let s = TestServer::start().await;
    create_user(&s, "dev").await;
    create_project(&s, "team", false).await;
    add_member(&s, "team", json!({"user": "dev"}), None, "maintainer").await;
    let dev = As::Basic("dev", PASSWORD);
    let digest = {
        let (_, d) = s.push_image("team/app", "1", &[b"audited"]).await;
        d
    };
    assert_eq!(
        status(&s, dev, Method::GET, "/v2/team/app/manifests/1").await,
        StatusCode::OK
    );
    assert_eq!(
        status(
            &s,
            dev,
            Method::DELETE,
            &format!("/v2/team/app/manifests/{digest}")
        )
        .await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        status(
            &s,
            As::Basic("dev", "wrong password"),
            Method::GET,
            "/api/v1/users/current"
        )
        .await,
        StatusCode::UNAUTHORIZED
    );

    let log = admin(
        &s,
        Method::GET,
        "/api/v1/audit-logs?project=team&page_size=100",
        None,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        log["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("project"),
        "unknown filters are refused: {log}"
    );
    let log = admin(
        &s,
        Method::GET,
        "/api/v1/projects/team/audit-logs?sort=occurred_at",
        None,
        StatusCode::OK,
    )
    .await;
    let seen: Vec<(String, String, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().into(),
                e["operation"].as_str().unwrap().into(),
                e["resource"].as_str().unwrap().into(),
            )
        })
        .collect();
    for expected in [
        ("admin".to_owned(), "create".to_owned(), "team".to_owned()),
        ("admin".into(), "push".into(), "team/app:1".into()),
        ("dev".into(), "pull".into(), "team/app:1".into()),
        ("dev".into(), "delete".into(), format!("team/app@{digest}")),
    ] {
        assert!(seen.contains(&expected), "{expected:?} not in {seen:?}");
    }
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["address"] == "127.0.0.1")
    );
    let failures = admin(
        &s,
        Method::GET,
        "/api/v1/audit-logs?operation=login&success=false",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(failures["total"], 1, "{failures}");
    assert_eq!(failures["items"][0]["actor"], "dev");
    // Members below guest may not read it.
    create_user(&s, "lg").await;
    add_member(&s, "team", json!({"user": "lg"}), None, "limited-guest").await;
    assert_eq!(
        status(
            &s,
            As::Basic("lg", PASSWORD),
            Method::GET,
            "/api/v1/projects/team/audit-logs"
        )
        .await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn users_manage_themselves_and_admins_manage_users() {
    let s = TestServer::start().await;
    create_user(&s, "ann").await;
    let ann = As::Basic("ann", PASSWORD);
    assert_eq!(
        status(&s, ann, Method::GET, "/api/v1/users").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&s, ann, Method::GET, "/api/v1/users/admin").await,
        StatusCode::FORBIDDEN
    );
    let (code, me) = call(
        &s,
        ann,
        Method::PATCH,
        "/api/v1/users/ann",
        Some(json!({"full_name": "Ann"})),
    )
    .await;
    assert_eq!(
        (code, me["full_name"].as_str()),
        (StatusCode::OK, Some("Ann"))
    );
    let (code, _) = call(
        &s,
        ann,
        Method::PATCH,
        "/api/v1/users/ann",
        Some(json!({"admin": true})),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let wrong = json!({"current_password": "not it at all", "new_password": "brand new password"});
    assert_eq!(
        call(
            &s,
            ann,
            Method::PUT,
            "/api/v1/users/ann/password",
            Some(wrong)
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let short = json!({"current_password": PASSWORD, "new_password": "short"});
    assert_eq!(
        call(
            &s,
            ann,
            Method::PUT,
            "/api/v1/users/ann/password",
            Some(short)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    let right = json!({"current_password": PASSWORD, "new_password": "brand new password"});
    assert_eq!(
        call(
            &s,
            ann,
            Method::PUT,
            "/api/v1/users/ann/password",
            Some(right)
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        status(&s, ann, Method::GET, "/api/v1/users/current").await,
        StatusCode::UNAUTHORIZED
    );
    let ann = As::Basic("ann", "brand new password");
    assert_eq!(
        status(&s, ann, Method::GET, "/api/v1/users/current").await,
        StatusCode::OK
    );
    // Any user may create a project and becomes its project admin.
    let (code, _) = call(
        &s,
        ann,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "anns"})),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let (_, members) = call(&s, ann, Method::GET, "/api/v1/projects/anns/members", None).await;
    assert_eq!(members["items"][0]["user"], "ann");
    assert_eq!(members["items"][0]["role"], "project-admin");
    // Disabled users cannot sign in; listings filter, sort and page.
    admin(
        &s,
        Method::PATCH,
        "/api/v1/users/ann",
        Some(json!({"disabled": true})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        status(&s, ann, Method::GET, "/api/v1/users/current").await,
        StatusCode::UNAUTHORIZED
    );
    let page = admin(
        &s,
        Method::GET,
        "/api/v1/users?sort=-name&page_size=1&page=2",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (page["total"].as_u64(), page["items"][0]["name"].as_str()),
        (Some(2), Some("admin"))
    );
    admin(
        &s,
        Method::DELETE,
        "/api/v1/users/admin",
        None,
        StatusCode::CONFLICT,
    )
    .await;
}

/// LDAP users sign in with their directory password; directory groups hold
/// project roles; the admin group makes system administrators.
#[tokio::test]
async fn ldap_users_and_groups() {
    let Ok(url) = std::env::var("TEST_WHARF_LDAP_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but TEST_WHARF_LDAP_URL is not set"
        );
        eprintln!("skipped: TEST_WHARF_LDAP_URL is not set (eval \"$(.ci/slapd.sh)\")");
        return;
    };
    let base = std::env::var("TEST_WHARF_LDAP_BASE_DN").unwrap();
    let s = TestServer::start_with(|c| {
        c.auth.ldap = Some(identity::ldap::LdapConfig {
            url,
            bind_dn: std::env::var("TEST_WHARF_LDAP_BIND_DN").unwrap(),
            bind_password: std::env::var("TEST_WHARF_LDAP_BIND_PASSWORD").unwrap(),
            user_base_dn: format!("ou=people,{base}"),
            group_base_dn: Some(format!("ou=groups,{base}")),
            admin_group: Some(format!("cn=admins,ou=groups,{base}")),
            ..identity::ldap::LdapConfig::default()
        })
    })
    .await;
    create_project(&s, "team", false).await;
    add_member(
        &s,
        "team",
        json!({"group": format!("cn=developers,ou=groups,{base}")}),
        None,
        "developer",
    )
    .await;
    let alice = As::Basic("alice", "alice-password");
    let (code, me) = call(&s, alice, Method::GET, "/api/v1/users/current", None).await;
    assert_eq!(code, StatusCode::OK, "{me}");
    assert_eq!(me["admin"], false);
    assert_eq!(
        me["memberships"],
        json!([{"project": "team", "repository": null, "role": "developer"}])
    );
    assert_eq!(
        push_blob(&s, alice, "team/app", b"from ldap").await,
        StatusCode::CREATED
    );
    let user = admin(&s, Method::GET, "/api/v1/users/alice", None, StatusCode::OK).await;
    assert_eq!(
        (user["source"].as_str(), user["email"].as_str()),
        (Some("ldap"), Some("alice@wharf.test"))
    );
    assert_eq!(
        status(
            &s,
            As::Basic("alice", "wrong"),
            Method::GET,
            "/api/v1/users/current"
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    // carol is in the admin group.
    let (_, carol) = call(
        &s,
        As::Basic("carol", "carol-password"),
        Method::GET,
        "/api/v1/users/current",
        None,
    )
    .await;
    assert_eq!(carol["admin"], true);
    // A token works for directory users as for local ones.
    let (code, body) = token(&s, alice, "scope=repository:team/app:pull,push").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        push_blob(
            &s,
            As::Bearer(body["token"].as_str().unwrap()),
            "team/app",
            b"via token"
        )
        .await,
        StatusCode::CREATED
    );
    // A directory user's password cannot be set in wharf.
    let (code, _) = call(&s, alice, Method::PUT, "/api/v1/users/alice/password", Some(json!({"current_password": "alice-password", "new_password": "something else entirely"}))).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn repositories_artifacts_and_tags_through_the_api() {
    let s = TestServer::start().await;
    create_project(&s, "team", false).await;
    let (_, first) = s
        .push_image("team/tools/app", "1.0", &[b"layer one", b"layer two"])
        .await;
    s.push_image("team/web", "latest", &[b"web"]).await;
    create_user(&s, "ci").await;
    add_member(&s, "team", json!({"user": "ci"}), Some("web"), "guest").await;

    let repos = admin(
        &s,
        Method::GET,
        "/api/v1/projects/team/repositories?sort=name",
        None,
        StatusCode::OK,
    )
    .await;
    let names: Vec<&str> = repos["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["team/tools/app", "team/web"]);
    assert_eq!(repos["items"][0]["name_in_project"], "tools/app");
    assert_eq!(repos["items"][0]["artifact_count"], 1);
    // A repository grant shows that repository only; outsiders see nothing.
    let (_, mine) = call(
        &s,
        As::Basic("ci", PASSWORD),
        Method::GET,
        "/api/v1/projects/team/repositories",
        None,
    )
    .await;
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["items"][0]["name"], "team/web");
    assert_eq!(
        status(
            &s,
            As::Basic("ci", PASSWORD),
            Method::GET,
            "/api/v1/projects/team/repositories/tools%2Fapp/artifacts"
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(
            &s,
            As::Anonymous,
            Method::GET,
            "/api/v1/projects/team/repositories"
        )
        .await,
        StatusCode::NOT_FOUND
    );

    let artifacts = admin(
        &s,
        Method::GET,
        "/api/v1/projects/team/repositories/tools%2Fapp/artifacts",
        None,
        StatusCode::OK,
    )
    .await;
    let a = &artifacts["items"][0];
    assert_eq!(a["digest"], first.as_str());
    assert_eq!(a["tags"], json!(["1.0"]));
    assert!(a["size"].as_u64().unwrap() > 18, "{a}");
    assert!(a["pushed_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(a["pulled_at"], Value::Null);

    // A pull is recorded within seconds.
    assert_eq!(
        s.get("/v2/team/tools/app/manifests/1.0").await.status(),
        StatusCode::OK
    );
    let mut pulled = Value::Null;
    for _ in 0..80 {
        let tags = admin(
            &s,
            Method::GET,
            "/api/v1/projects/team/repositories/tools%2Fapp/tags",
            None,
            StatusCode::OK,
        )
        .await;
        pulled = tags["items"][0]["pulled_at"].clone();
        if pulled.is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(pulled.is_string(), "the pull time was not recorded");

    // Deleting through the API: a tag, then the artifact.
    s.push_image("team/web", "old", &[b"web old"]).await;
    admin(
        &s,
        Method::DELETE,
        "/api/v1/projects/team/repositories/web/tags/old",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(
        s.get("/v2/team/web/manifests/old").await.status(),
        StatusCode::NOT_FOUND
    );
    let (_, web) = {
        let r = admin(
            &s,
            Method::GET,
            "/api/v1/projects/team/repositories/web/artifacts?tagged=yes",
            None,
            StatusCode::OK,
        )
        .await;
        (
            r["total"].clone(),
            r["items"][0]["digest"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        status(
            &s,
            As::Basic("ci", PASSWORD),
            Method::DELETE,
            &format!("/api/v1/projects/team/repositories/web/artifacts/{web}")
        )
        .await,
        StatusCode::FORBIDDEN
    );
    admin(
        &s,
        Method::DELETE,
        &format!("/api/v1/projects/team/repositories/web/artifacts/{web}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(
        s.get("/v2/team/web/manifests/latest").await.status(),
        StatusCode::NOT_FOUND
    );
    let log = admin(
        &s,
        Method::GET,
        "/api/v1/projects/team/audit-logs?operation=delete",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(log["total"], 2, "{log}");
}
