//! The `wharf` command-line client, run as a real process against a test
//! server: sign-in and the credential file, projects and members, users,
//! robots, errors and `--json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::access::{As, PASSWORD, call, create_user};
use crate::common::*;

/// What a run of `wharf` left behind.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "failed: {self:?}");
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The value of a `key: value` line of stdout.
    #[track_caller]
    fn field(&self, key: &str) -> String {
        let prefix = format!("{key}:");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {key:?} line: {self:?}"))
    }
}

/// The client's surroundings: a home directory of its own (so no real
/// credential file is ever touched) and a credential file in it.
struct Client {
    home: tempfile::TempDir,
    registry: String,
    authfile: PathBuf,
}

impl Client {
    fn new(s: &TestServer) -> Client {
        let home = tempfile::tempdir().unwrap();
        let authfile = home.path().join("containers").join("auth.json");
        Client {
            registry: s.base.clone(),
            authfile,
            home,
        }
    }

    /// Runs `wharf ARGS --registry ... --authfile ...` with `stdin` (or none)
    /// and the extra environment variables `env`.
    async fn run_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wharf"));
        command.args(args);
        if !args.contains(&"--registry") {
            command.args(["--registry", &self.registry]);
        }
        command.arg("--authfile").arg(&self.authfile);
        for (name, _) in std::env::vars_os() {
            let n = name.to_string_lossy();
            if n.starts_with("WHARF_") || n == "REGISTRY_AUTH_FILE" || n == "DOCKER_CONFIG" {
                command.env_remove(&name);
            }
        }
        command.env("HOME", self.home.path());
        command.envs(env.iter().copied());
        command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let input = stdin.map(str::to_owned);
        let output = tokio::task::spawn_blocking(move || {
            let mut child = command.spawn().unwrap();
            if let Some(input) = input {
                use std::io::Write;
                let mut pipe = child.stdin.take().unwrap();
                pipe.write_all(input.as_bytes()).unwrap();
            }
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None, &[]).await
    }

    async fn login(&self, user: &str, password: &str) {
        self.run_with(
            &["login", "-u", user, "--password-stdin"],
            Some(&format!("{password}\n")),
            &[],
        )
        .await
        .ok();
    }

    fn file(&self) -> Value {
        read_json(&self.authfile)
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn auth(user: &str, password: &str) -> String {
    STANDARD.encode(format!("{user}:{password}"))
}

/// The status of `GET path` with Basic credentials.
async fn basic_status(s: &TestServer, name: &str, secret: &str, path: &str) -> StatusCode {
    call(s, As::Basic(name, secret), Method::GET, path, None)
        .await
        .0
}

#[tokio::test]
async fn login_whoami_logout_and_the_credential_file() {
    let s = TestServer::start().await;
    let c = Client::new(&s);
    let host = s.host();
    // A file other tools wrote: its other entries and keys must survive.
    let foreign = json!({
        "auths": {"other.example:5000": {"auth": auth("someone", "x")}},
        "credHelpers": {"gcr.io": "gcloud"},
    });
    std::fs::create_dir_all(c.authfile.parent().unwrap()).unwrap();
    std::fs::write(&c.authfile, foreign.to_string()).unwrap();

    let run = c
        .run_with(
            &["login", "-u", "admin", "--password-stdin"],
            Some(&format!("{ADMIN_PASSWORD}\n")),
            &[],
        )
        .await
        .ok();
    assert!(run.stdout.contains("admin"), "{run:?}");
    let file = c.file();
    assert_eq!(file["auths"][&host]["auth"], auth("admin", ADMIN_PASSWORD));
    assert_eq!(
        file["auths"]["other.example:5000"],
        foreign["auths"]["other.example:5000"]
    );
    assert_eq!(file["credHelpers"], foreign["credHelpers"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&c.authfile).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let run = c.run(&["user", "whoami"]).await.ok();
    assert_eq!(run.field("name"), "admin");
    assert!(run.stdout.contains("system administrator"), "{run:?}");
    let me = c.run(&["user", "whoami", "--json"]).await.ok().json();
    assert_eq!(me["name"], "admin");
    assert_eq!(me["kind"], "user");
    assert_eq!(me["admin"], true);

    // A wrong password: the API's message, exit code 1, the file unchanged.
    let run = c
        .run_with(
            &["login", "-u", "admin", "--password-stdin"],
            Some("wrong password\n"),
            &[],
        )
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.starts_with("wharf: "), "{run:?}");
    assert!(run.stderr.contains("(UNAUTHORIZED, HTTP 401)"), "{run:?}");
    assert_eq!(
        c.file()["auths"][&host]["auth"],
        auth("admin", ADMIN_PASSWORD)
    );

    // No password at all (stdin is not a terminal): a usage error.
    let run = c.run(&["login", "-u", "admin"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--password-stdin"), "{run:?}");
    // The password from WHARF_PASSWORD, the registry as a bare loopback
    // host:port (plain http).
    c.run_with(
        &["login", "-u", "admin", "--registry", &host],
        None,
        &[("WHARF_PASSWORD", ADMIN_PASSWORD)],
    )
    .await
    .ok();

    let run = c.run(&["logout"]).await.ok();
    assert!(run.stdout.contains(&host), "{run:?}");
    let file = c.file();
    assert!(file["auths"].get(&host).is_none(), "{file}");
    assert_eq!(
        file["auths"]["other.example:5000"],
        foreign["auths"]["other.example:5000"]
    );
    assert_eq!(file["credHelpers"], foreign["credHelpers"]);
    let run = c.run(&["user", "whoami"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not signed in"), "{run:?}");

    // WHARF_USERNAME + WHARF_PASSWORD sign requests without a file entry.
    let run = c
        .run_with(
            &["user", "whoami", "--json"],
            None,
            &[
                ("WHARF_USERNAME", "admin"),
                ("WHARF_PASSWORD", ADMIN_PASSWORD),
            ],
        )
        .await
        .ok();
    assert_eq!(run.json()["name"], "admin");

    // Anonymous reads work where the API allows them.
    let run = c.run(&["project", "list"]).await.ok();
    assert!(run.stdout.contains("library"), "{run:?}");
    let run = c.run(&["user", "list"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("wharf login"), "{run:?}");

    // Usage errors are exit code 2.
    assert_eq!(c.run(&["project"]).await.code, 2);
    assert_eq!(c.run(&["user", "set-admin", "x", "maybe"]).await.code, 2);
    assert_eq!(
        c.run(&["project", "list", "--registry", "ftp://x"])
            .await
            .code,
        2
    );
}

#[tokio::test]
async fn projects_and_members() {
    let s = TestServer::start().await;
    let c = Client::new(&s);
    c.login("admin", ADMIN_PASSWORD).await;
    create_user(&s, "alice").await;

    let run = c
        .run(&[
            "project",
            "create",
            "team",
            "--description",
            "The team",
            "--label",
            "env=prod",
            "--label",
            "tier=1",
        ])
        .await
        .ok();
    assert!(run.stdout.contains("private project team"), "{run:?}");

    let run = c.run(&["project", "list"]).await.ok();
    let header = run.stdout.lines().next().unwrap();
    assert!(header.starts_with("NAME"), "{run:?}");
    assert!(header.contains("PUBLIC") && header.contains("REPOSITORIES"));
    let team = run
        .stdout
        .lines()
        .find(|l| l.starts_with("team "))
        .unwrap_or_else(|| panic!("{run:?}"));
    assert!(team.contains("env=prod,tier=1") && team.contains("The team"));
    let list = c.run(&["project", "list", "--json"]).await.ok().json();
    assert_eq!(list["total"], 2);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"team") && names.contains(&"library"));
    let run = c
        .run(&["project", "list", "--page-size", "1", "--sort", "-name"])
        .await
        .ok();
    assert!(run.stdout.lines().nth(1).unwrap().starts_with("team"));
    assert!(run.stdout.contains("1 of 2"), "{run:?}");
    let run = c.run(&["project", "list", "--private"]).await.ok();
    assert!(!run.stdout.contains("library"), "{run:?}");

    let run = c.run(&["project", "show", "team"]).await.ok();
    assert_eq!(run.field("public"), "no");
    assert_eq!(run.field("description"), "The team");
    let run = c
        .run(&[
            "project", "update", "team", "--public", "--label", "env=dev",
        ])
        .await
        .ok();
    assert_eq!(run.field("public"), "yes");
    assert_eq!(run.field("labels"), "env=dev");
    let shown = c
        .run(&["project", "show", "team", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(shown["public"], true);
    assert_eq!(shown["labels"], json!({"env": "dev"}));
    assert_eq!(shown["description"], "The team");

    // Members.
    let added = c
        .run(&[
            "project",
            "add-member",
            "team",
            "--user",
            "alice",
            "--role",
            "developer",
            "--json",
        ])
        .await
        .ok()
        .json();
    let id = added["id"].as_i64().unwrap();
    assert_eq!(added["role"], "developer");
    let run = c
        .run(&[
            "project",
            "add-member",
            "team",
            "--user",
            "alice",
            "--role",
            "guest",
            "--repository",
            "app",
        ])
        .await
        .ok();
    assert!(run.stdout.contains("guest") && run.stdout.contains("app"));
    let run = c.run(&["project", "members", "team"]).await.ok();
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("{run:?}"));
    assert!(row.contains("developer") && row.contains("alice"), "{row}");

    c.run(&["project", "set-role", "team", &id.to_string(), "maintainer"])
        .await
        .ok();
    let members = c
        .run(&["project", "members", "team", "--json"])
        .await
        .ok()
        .json();
    let member = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap();
    assert_eq!(member["role"], "maintainer");
    // alice is now a maintainer of team.
    let (status, _) = call(
        &s,
        As::Basic("alice", PASSWORD),
        Method::GET,
        "/api/v1/projects/team/robots",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    c.run(&["project", "remove-member", "team", &id.to_string()])
        .await
        .ok();
    let members = c
        .run(&["project", "members", "team", "--json"])
        .await
        .ok()
        .json();
    assert!(
        members["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["id"] != id)
    );

    // Roles are checked before anything is sent.
    let run = c
        .run(&["project", "set-role", "team", &id.to_string(), "owner"])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    // The API's errors: message, code and status on stderr, exit code 1.
    let run = c.run(&["project", "create", "Not A Name"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("(INVALID, HTTP 400)"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");

    let run = c.run(&["project", "delete", "team"]).await.ok();
    assert!(run.stdout.contains("team"), "{run:?}");
    let run = c.run(&["project", "show", "team"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("(NOT_FOUND, HTTP 404)"), "{run:?}");
}

#[tokio::test]
async fn users_passwords_and_disabling() {
    let s = TestServer::start().await;
    let c = Client::new(&s);
    c.login("admin", ADMIN_PASSWORD).await;

    // A generated password, printed once, that works.
    let run = c
        .run(&["user", "create", "bob", "--email", "bob@example.com"])
        .await
        .ok();
    let generated = run.field("password");
    assert_eq!(generated.len(), 24, "{run:?}");
    assert!(run.stderr.contains("only this once"), "{run:?}");
    assert_eq!(
        basic_status(&s, "bob", &generated, "/api/v1/users/current").await,
        StatusCode::OK
    );
    // A chosen one, from stdin.
    let created = c
        .run_with(
            &["user", "create", "carol", "--password-stdin", "--json"],
            Some("carols password\n"),
            &[],
        )
        .await
        .ok()
        .json();
    assert_eq!(created["name"], "carol");
    assert!(created.get("password").is_none(), "{created}");
    assert_eq!(
        basic_status(&s, "carol", "carols password", "/api/v1/users/current").await,
        StatusCode::OK
    );

    // With --json, a generated password is added to the API's answer.
    let created = c
        .run(&["user", "create", "dave", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(created["name"], "dave");
    let dave = created["password"].as_str().unwrap();
    assert_eq!(
        basic_status(&s, "dave", dave, "/api/v1/users/current").await,
        StatusCode::OK
    );

    let run = c.run(&["user", "list", "--query", "bo"]).await.ok();
    assert!(run.stdout.contains("bob@example.com"), "{run:?}");
    assert!(!run.stdout.contains("carol"), "{run:?}");
    let run = c.run(&["user", "show", "bob"]).await.ok();
    assert_eq!(run.field("email"), "bob@example.com");
    assert_eq!(run.field("admin"), "no");

    // An administrator sets bob's password.
    c.run_with(
        &["user", "passwd", "bob"],
        Some("bobs second password\n"),
        &[],
    )
    .await
    .ok();
    assert_eq!(
        basic_status(&s, "bob", &generated, "/api/v1/users/current").await,
        StatusCode::UNAUTHORIZED
    );
    // bob changes his own; his credential file follows.
    let bob = Client::new(&s);
    bob.login("bob", "bobs second password").await;
    let run = bob
        .run_with(&["user", "passwd"], Some("bobs third password\n"), &[])
        .await
        .ok();
    assert!(run.stdout.contains("bob"), "{run:?}");
    assert_eq!(
        bob.file()["auths"][&s.host()]["auth"],
        auth("bob", "bobs third password")
    );
    assert_eq!(
        bob.run(&["user", "whoami", "--json"]).await.ok().json()["name"],
        "bob"
    );
    // bob may not set carol's.
    let run = bob
        .run_with(&["user", "passwd", "carol"], Some("not carols\n"), &[])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("HTTP 403"), "{run:?}");

    // Disabled users cannot sign in; enabled ones can again.
    let run = c.run(&["user", "disable", "bob"]).await.ok();
    assert_eq!(run.field("disabled"), "yes");
    assert_eq!(
        basic_status(&s, "bob", "bobs third password", "/api/v1/users/current").await,
        StatusCode::UNAUTHORIZED
    );
    c.run(&["user", "enable", "bob"]).await.ok();
    assert_eq!(
        basic_status(&s, "bob", "bobs third password", "/api/v1/users/current").await,
        StatusCode::OK
    );
    let shown = c
        .run(&["user", "set-admin", "bob", "true", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(shown["admin"], true);

    c.run(&["user", "delete", "carol"]).await.ok();
    assert_eq!(c.run(&["user", "show", "carol"]).await.code, 1);
}

#[tokio::test]
async fn project_and_system_robots() {
    let s = TestServer::start().await;
    let c = Client::new(&s);
    c.login("admin", ADMIN_PASSWORD).await;
    c.run(&["project", "create", "team"]).await.ok();
    s.push_image("team/app", "1", &[b"robot layer"]).await;

    let run = c
        .run(&[
            "robot",
            "create",
            "ci",
            "--project",
            "team",
            "--description",
            "the CI",
            "--permission",
            "app:pull,push",
        ])
        .await
        .ok();
    assert_eq!(run.field("name"), "robot$team+ci");
    let secret = run.field("secret");
    assert!(run.stderr.contains("will not be shown again"), "{run:?}");
    assert_eq!(
        basic_status(&s, "robot$team+ci", &secret, "/v2/").await,
        StatusCode::OK
    );
    assert_eq!(
        basic_status(&s, "robot$team+ci", &secret, "/v2/team/app/tags/list").await,
        StatusCode::OK
    );

    let run = c.run(&["robot", "list", "--project", "team"]).await.ok();
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("robot$team+ci"))
        .unwrap_or_else(|| panic!("{run:?}"));
    assert!(
        row.contains("app:pull,push") && row.contains("the CI"),
        "{row}"
    );
    let run = c
        .run(&["robot", "show", "ci", "--project", "team"])
        .await
        .ok();
    assert_eq!(run.field("permissions"), "app:pull,push");
    assert_eq!(run.field("project"), "team");
    // The full name works too.
    let shown = c
        .run(&["robot", "show", "robot$team+ci", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(shown["description"], "the CI");

    // A new secret; the old one stops working.
    let run = c
        .run(&["robot", "refresh-secret", "ci", "--project", "team"])
        .await
        .ok();
    let fresh = run.field("secret");
    assert_ne!(fresh, secret);
    assert_eq!(
        basic_status(&s, "robot$team+ci", &secret, "/v2/").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        basic_status(&s, "robot$team+ci", &fresh, "/v2/").await,
        StatusCode::OK
    );
    let run = c
        .run(&["robot", "disable", "ci", "--project", "team"])
        .await
        .ok();
    assert_eq!(run.field("disabled"), "yes");
    assert_eq!(
        basic_status(&s, "robot$team+ci", &fresh, "/v2/").await,
        StatusCode::UNAUTHORIZED
    );
    c.run(&["robot", "enable", "ci", "--project", "team"])
        .await
        .ok();
    assert_eq!(
        basic_status(&s, "robot$team+ci", &fresh, "/v2/").await,
        StatusCode::OK
    );

    // A system robot, with --json: the secret is in the API's answer.
    let created = c
        .run(&[
            "robot",
            "create",
            "ops",
            "--permission",
            "*:pull",
            "--permission",
            "team/app:push",
            "--expires-at",
            "2099-01-02T03:04:05Z",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(created["robot"]["name"], "robot$ops");
    let ops_secret = created["secret"].as_str().unwrap();
    assert_eq!(
        basic_status(&s, "robot$ops", ops_secret, "/v2/team/app/tags/list").await,
        StatusCode::OK
    );
    let run = c.run(&["robot", "list"]).await.ok();
    assert!(run.stdout.contains("*:pull team/app:push"), "{run:?}");
    // A system robot's permission must name its project.
    let run = c
        .run(&["robot", "create", "bad", "--permission", "pull"])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    let run = c
        .run(&["robot", "create", "bad", "--permission", "app:fly"])
        .await;
    assert_eq!(run.code, 2, "{run:?}");

    c.run(&["robot", "delete", "ci", "--project", "team"])
        .await
        .ok();
    let run = c.run(&["robot", "show", "ci", "--project", "team"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("HTTP 404"), "{run:?}");
    c.run(&["robot", "delete", "ops"]).await.ok();

    let rotated = c.run(&["system", "rotate-key", "--json"]).await.ok().json();
    assert!(rotated["key_id"].as_str().is_some_and(|k| !k.is_empty()));
    let run = c.run(&["system", "rotate-key"]).await.ok();
    assert!(run.stdout.contains("key"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_commands() {
    let s = TestServer::start_with(crate::lifecycle::lifecycle_server).await;
    let c = Client::new(&s);
    c.login("admin", ADMIN_PASSWORD).await;
    c.run(&["project", "create", "team"]).await.ok();
    s.push_image("team/app", "v1.0.0", &[b"cli v1"]).await;
    let (_, old) = s.push_image("team/app", "build-1", &[b"cli build 1"]).await;
    s.push_image("team/app", "build-2", &[b"cli build 2"]).await;

    // Quotas: limits with units, usage shown against them.
    let run = c
        .run(&[
            "quota",
            "set",
            "team",
            "--storage",
            "10MiB",
            "--artifacts",
            "100",
        ])
        .await
        .ok();
    assert!(
        run.field("storage").ends_with("of 10.0 MiB (0%)"),
        "{run:?}"
    );
    assert!(run.field("artifacts").starts_with("3 of 100"), "{run:?}");
    let run = c.run(&["quota", "--json", "get", "team"]).await.ok();
    assert_eq!(run.json()["storage_limit"], 10 << 20);
    let run = c
        .run(&["quota", "set", "team", "--storage", "unlimited"])
        .await
        .ok();
    assert!(run.field("storage").ends_with("(unlimited)"), "{run:?}");
    let run = c
        .run(&["quota", "set", "team", "--storage", "5 parsecs"])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    let run = c.run(&["quota", "set", "team"]).await;
    assert_eq!(run.code, 2, "{run:?}");

    // Immutability: a rule added from options protects the release tag.
    let run = c
        .run(&[
            "immutability",
            "add",
            "team",
            "--tag",
            "v*",
            "--exclude-tag",
            "v*-rc*",
        ])
        .await
        .ok();
    assert!(
        run.stdout.contains("team has 1 immutability rule(s)."),
        "{run:?}"
    );
    let row = run.stdout.lines().find(|l| l.starts_with("1 ")).unwrap();
    assert!(
        row.contains("**") && row.contains("v*") && row.contains("v*-rc*"),
        "{row}"
    );
    let (other, _) = s.push_image("team/app", "other", &[b"cli other"]).await;
    let refused = s
        .put_manifest("team/app", "v1.0.0", OCI_MANIFEST, &other)
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let run = c.run(&["immutability", "--json", "get", "team"]).await.ok();
    assert_eq!(run.json().as_array().unwrap().len(), 1);
    let bad = c
        .run_with(&["immutability", "set", "team", "-"], Some("{}"), &[])
        .await;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("JSON array"), "{bad:?}");

    // Retention: a policy from a file, a dry run that names the rule, the run
    // listed, then a real run.
    let policy = c.home.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"rules": [{"repositories": {"include": ["**"]},
                       "tags": {"include": ["build-*"]},
                       "keep": {"latest_pushed": 1}}]}"#,
    )
    .unwrap();
    let run = c
        .run(&[
            "retention",
            "set",
            "team",
            policy.to_str().unwrap(),
            "--schedule",
            "0 3 * * *",
        ])
        .await
        .ok();
    assert!(run.stdout.contains("1 rule(s)"), "{run:?}");
    let run = c.run(&["retention", "get", "team"]).await.ok();
    assert_eq!(run.field("schedule"), "0 3 * * *");
    let run = c.run(&["retention", "run", "team", "--dry-run"]).await.ok();
    assert_eq!(run.field("status"), "succeeded");
    assert_eq!(run.field("mode"), "dry run");
    let row = run
        .stdout
        .lines()
        .find(|l| l.contains(old.as_str()))
        .unwrap_or_else(|| panic!("the old build is not listed: {run:?}"));
    assert!(row.contains("build-1") && row.contains("rule 1"), "{row}");
    assert_eq!(
        s.head(&format!("/v2/team/app/manifests/{old}"))
            .await
            .status(),
        StatusCode::OK,
        "a dry run deletes nothing"
    );
    let run = c
        .run(&["retention", "--json", "run", "team", "--detach"])
        .await
        .ok();
    let id = run.json()["id"].as_i64().unwrap().to_string();
    let mut shown = c
        .run(&["retention", "--json", "show", "team", &id])
        .await
        .ok();
    while shown.json()["status"] == "running" {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        shown = c
            .run(&["retention", "--json", "show", "team", &id])
            .await
            .ok();
    }
    assert_eq!(shown.json()["status"], "succeeded", "{shown:?}");
    assert_eq!(
        s.head(&format!("/v2/team/app/manifests/{old}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let run = c.run(&["retention", "runs", "team"]).await.ok();
    assert_eq!(
        run.stdout.lines().count(),
        3,
        "a header and two runs: {run:?}"
    );
    assert!(run.stdout.contains("dry run"), "{run:?}");
    c.run(&["retention", "delete", "team"]).await.ok();
    let run = c.run(&["retention", "get", "team"]).await;
    assert_eq!(run.code, 1, "{run:?}");

    // GC: the deleted build's layer goes, first counted by a dry run.
    let run = c.run(&["gc", "run", "--dry-run"]).await.ok();
    assert_eq!(run.field("status"), "succeeded");
    assert!(run.field("blobs").parse::<u64>().unwrap() >= 2, "{run:?}");
    let run = c.run(&["gc", "run"]).await.ok();
    assert_eq!(run.field("mode"), "real");
    let id = run.field("run");
    let run = c.run(&["gc", "--json", "show", &id]).await.ok();
    assert!(
        run.json()["summary"]["blobs"].as_u64().unwrap() >= 2,
        "{run:?}"
    );
    let run = c.run(&["gc", "runs"]).await.ok();
    assert_eq!(run.stdout.lines().count(), 3, "{run:?}");

    // Integrity: everything whole.
    let run = c.run(&["integrity", "run"]).await.ok();
    assert_eq!(run.field("missing"), "0");
    assert_eq!(run.field("corrupt"), "0");

    // Who may do what: a project member cannot start a collection.
    create_user(&s, "dev").await;
    let dev = Client::new(&s);
    dev.login("dev", PASSWORD).await;
    let run = dev.run(&["gc", "run"]).await;
    assert_eq!(run.code, 1, "{run:?}");
}

#[tokio::test]
async fn webhook_promotion_and_tag_commands() {
    let s = TestServer::start().await;
    let c = Client::new(&s);
    c.login("admin", ADMIN_PASSWORD).await;

    // A policy, its secret from the environment, never printed back.
    let secret = "a-secret-of-some-length";
    let run = c
        .run_with(
            &[
                "webhook",
                "create",
                "library",
                "ci",
                "--url",
                "http://127.0.0.1:9/hook",
                "--event",
                "artifact.pushed",
                "--event",
                "tag.moved",
                "--format",
                "cloudevents",
                "--secret-env",
                "HOOK_SECRET",
            ],
            None,
            &[("HOOK_SECRET", secret)],
        )
        .await
        .ok();
    assert!(run.stdout.starts_with("Created webhook"), "{run:?}");
    let run = c.run(&["webhook", "--json", "list", "library"]).await.ok();
    let policy = &run.json()["items"][0];
    assert_eq!(policy["secret_set"], true);
    assert_eq!(
        policy["events"],
        serde_json::json!(["artifact.pushed", "tag.moved"])
    );
    assert!(!run.stdout.contains(secret));
    let id = policy["id"].to_string();
    let run = c.run(&["webhook", "show", "library", &id]).await.ok();
    assert_eq!(run.field("secret"), "set");
    let run = c
        .run(&[
            "webhook",
            "create",
            "library",
            "bad",
            "--url",
            "http://x/",
            "--event",
            "nope",
        ])
        .await;
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("unknown event type"), "{run:?}");

    // Promotion, then the promoted tag in a version-sorted listing.
    s.push_image("dev/app", "1.2.3", &[b"cli promoted"]).await;
    let run = c
        .run(&["promote", "dev/app:1.2.3", "prod/app:1.2.3"])
        .await
        .ok();
    assert!(run.stdout.contains("none copied"), "{run:?}");
    s.push_image("prod/app", "1.10.0", &[b"cli newer"]).await;
    let run = c
        .run(&["tag", "--json", "list", "prod/app", "--sort", "-semver"])
        .await
        .ok();
    let listed = run.json();
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["1.10.0", "1.2.3"]);

    // A tag moved, its history, and back.
    let (_, first) = s.push_image("prod/app", "stable", &[b"cli stable 1"]).await;
    s.push_image("prod/app", "stable", &[b"cli stable 2"]).await;
    let run = c.run(&["tag", "history", "prod/app:stable"]).await.ok();
    assert!(
        run.stdout.contains("moved") && run.stdout.contains("created"),
        "{run:?}"
    );
    let run = c.run(&["tag", "rollback", "prod/app:stable"]).await.ok();
    assert!(
        run.stdout.contains(&format!("now points at {first}")),
        "{run:?}"
    );
    let run = c.run(&["webhook", "deliveries", "library", &id]).await.ok();
    assert!(run.stdout.starts_with("ID"), "{run:?}");
}
