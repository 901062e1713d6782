//! The command-line client of the management API: `wharf login`, `logout`,
//! `project`, `user`, `robot` and `system`, and the lifecycle commands
//! `gc`, `integrity`, `retention`, `immutability` and `quota` (in
//! [`lifecycle`]).
//!
//! The clap types here are flattened into the binary's own subcommands
//! (`main.rs`); [`run`] executes one on a current-thread runtime and turns
//! the outcome into an exit code: 0 done, 1 failed (the API's message on
//! stderr), 2 a usage error.
//!
//! Credentials come from `WHARF_USERNAME` + `WHARF_PASSWORD` if both are
//! set, else from the registry's entry in the docker/podman credential file
//! (`authfile`), which `wharf login` writes; without either, requests go
//! out anonymously.

pub mod api;
pub mod authfile;
pub mod lifecycle;
mod output;
mod promotion;
mod webhooks;

use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{ArgAction, Args, Subcommand};

use api::{
    Action, ApiError, Client, Credentials, MemberRef, NewMember, NewProject, NewRobot, NewUser,
    Paging, Permission, ProjectChanges, ProjectPermission, Registry, Role, UserChanges,
};
use authfile::{AuthFile, Stored};

/// Options every client command takes, before or after its subcommand.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// The registry: a URL (`https://registry.example.com`,
    /// `http://10.0.0.5:5000`) or a bare `host:port`, which means https,
    /// except for a loopback address (127.0.0.0/8, localhost, ::1), which
    /// means plain http.
    #[arg(
        long,
        global = true,
        env = "WHARF_REGISTRY",
        default_value = "http://127.0.0.1:5000",
        value_name = "URL",
        value_parser = api::parse_registry,
    )]
    pub registry: Registry,
    /// The credential file (docker/podman format). Default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json, which docker,
    /// podman, skopeo and buildah all read.
    #[arg(long, global = true, env = "REGISTRY_AUTH_FILE", value_name = "PATH")]
    pub authfile: Option<PathBuf>,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Accept any TLS certificate (self-signed, expired, another host's).
    #[arg(long, global = true)]
    pub insecure: bool,
}

/// The client commands, flattened into `wharf`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in to a registry and store the credentials in the credential
    /// file (the entry docker, podman and skopeo use for that registry).
    ///
    /// The password comes from stdin with --password-stdin (one trailing
    /// newline is dropped), else from WHARF_PASSWORD, else, when stdin is a
    /// terminal, from a line typed after the prompt (it is echoed).
    Login {
        #[command(flatten)]
        options: Options,
        /// The user (or robot) name; default: WHARF_USERNAME.
        #[arg(short, long, env = "WHARF_USERNAME")]
        username: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove the registry's entry from the credential file.
    Logout {
        #[command(flatten)]
        options: Options,
    },
    /// Projects and their members.
    Project {
        #[command(flatten)]
        options: Options,
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Users.
    User {
        #[command(flatten)]
        options: Options,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Robot accounts: a project's, or system robots (with --project absent).
    Robot {
        #[command(flatten)]
        options: Options,
        #[command(subcommand)]
        command: RobotCommand,
    },
    /// The registry itself.
    System {
        #[command(flatten)]
        options: Options,
        #[command(subcommand)]
        command: SystemCommand,
    },
    /// Garbage collection: reclaim the storage of deleted images, online.
    Gc {
        #[command(flatten)]
        options: Options,
        #[command(subcommand)]
        command: lifecycle::GcCommand,
    },
    /// Integrity checks: every stored blob read back and checked against its digest.
    Integrity {
        #[command(flatten)]
        options: Options,
        #[command(subcommand)]
        command: lifecycle::IntegrityCommand,
    },
    /// A project's retention policy and its runs.
    Retention {
        #[command(flatten)]
        options: Options,
        #[command(subcommand)]
        command: lifecycle::RetentionCommand,
    },
    /// A project's immutable tags.
    Immutability {
        #[command(flatten)]
        options: Options,
        #[command(subcommand)]
        command: lifecycle::ImmutabilityCommand,
    },
    /// A project's storage and artifact quotas, and its usage.
    Quota {
        #[command(flatten)]
        options: Options,
        #[command(subcommand)]
        command: lifecycle::QuotaCommand,
    },
    /// Copy an image, with its signatures and SBOMs, to another repository
    /// or project on the server (no blob copied): `wharf promote
    /// dev/app:1.2.3 prod/app:1.2.3`.
    Promote {
        #[command(flatten)]
        options: Options,
        /// PROJECT/REPOSITORY:TAG or PROJECT/REPOSITORY@DIGEST
        from: String,
        /// PROJECT/REPOSITORY[:TAG] (without a tag, the source's).
        to: String,
    },
    /// A repository's tags, a tag's history, and rollback.
    Tag {
        #[command(flatten)]
        options: Options,
        #[command(subcommand)]
        command: promotion::TagCommand,
    },
    /// A project's webhooks and their delivery log.
    Webhook {
        #[command(flatten)]
        options: Options,
        #[command(subcommand)]
        command: webhooks::WebhookCommand,
    },
}

/// Which page of a listing, in what order.
#[derive(Debug, Clone, Args)]
pub struct PagingArgs {
    /// The page, from 1.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub page: Option<u64>,
    /// Entries per page, 1 to 100 (default 25).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub page_size: Option<u32>,
    /// Sort by this field, or `-field` for descending order.
    #[arg(long, value_name = "FIELD", allow_hyphen_values = true)]
    pub sort: Option<String>,
}

impl PagingArgs {
    fn paging(&self) -> Paging {
        Paging {
            page: self.page,
            page_size: self.page_size,
            sort: self.sort.clone(),
        }
    }
}

/// `--public` or `--private`, or neither.
#[derive(Debug, Clone, Args)]
pub struct Visibility {
    /// Public: anyone may pull.
    #[arg(long, conflicts_with = "private")]
    pub public: bool,
    /// Private: members only.
    #[arg(long)]
    pub private: bool,
}

impl Visibility {
    fn get(&self) -> Option<bool> {
        match (self.public, self.private) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Projects you may see. Sort fields: name, created_at, updated_at, repository_count.
    List {
        /// Names containing this.
        #[arg(long, short)]
        query: Option<String>,
        #[command(flatten)]
        visibility: Visibility,
        #[command(flatten)]
        paging: PagingArgs,
    },
    /// Create a project (private unless --public).
    Create {
        name: String,
        /// Anyone may pull from it.
        #[arg(long)]
        public: bool,
        /// What the project holds.
        #[arg(long)]
        description: Option<String>,
        /// A label; repeat for several.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Show a project.
    Show { name: String },
    /// Change a project: visibility, description, labels (--label replaces all of them).
    Update {
        name: String,
        #[command(flatten)]
        visibility: Visibility,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// A label; repeat for several. Replaces all labels.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Remove all labels.
        #[arg(long, conflicts_with = "labels")]
        clear_labels: bool,
    },
    /// Delete a project; it must hold no repositories.
    Delete { name: String },
    /// List a project's members. Sort fields: name, role, created_at.
    Members {
        name: String,
        #[command(flatten)]
        paging: PagingArgs,
    },
    /// Give a user or a directory group a role in a project, or in one of its repositories.
    AddMember {
        /// The project.
        name: String,
        #[command(flatten)]
        member: MemberArg,
        /// The role.
        #[arg(long, value_enum)]
        role: Role,
        /// Only this repository, by its name within the project (`app` for `team/app`).
        #[arg(long)]
        repository: Option<String>,
    },
    /// Change a member's role; ID is from `wharf project members`.
    SetRole {
        /// The project.
        name: String,
        id: i64,
        #[arg(value_enum)]
        role: Role,
    },
    /// Remove a member; ID is from `wharf project members`.
    RemoveMember {
        /// The project.
        name: String,
        id: i64,
    },
}

/// A user or a directory group.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct MemberArg {
    /// A user.
    #[arg(long)]
    pub user: Option<String>,
    /// A directory group (an LDAP group's DN).
    #[arg(long)]
    pub group: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Users (system administrators). Sort fields: name, email, created_at, last_login_at.
    List {
        /// Names or emails containing this.
        #[arg(long, short)]
        query: Option<String>,
        #[command(flatten)]
        paging: PagingArgs,
    },
    /// Create a local user. Without --password-stdin a password of 24 random
    /// characters is generated and printed (only this once).
    Create {
        name: String,
        /// The user's email address.
        #[arg(long)]
        email: Option<String>,
        /// The user's full name.
        #[arg(long)]
        full_name: Option<String>,
        /// Make the user a system administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from stdin (one trailing newline is dropped).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Show a user.
    Show { name: String },
    /// Who you are signed in as, with your memberships.
    Whoami,
    /// Set a password: one line read from stdin is the new password.
    ///
    /// For your own account (NAME absent or your own name) the password you
    /// are signed in with is sent as the current password, and the
    /// credential file's entry is updated afterwards. System administrators
    /// may set anyone's password.
    Passwd {
        /// The user; default: you.
        name: Option<String>,
    },
    /// Delete a user.
    Delete { name: String },
    /// Disable a user: sign-ins and their tokens stop working.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// Make a user a system administrator (true) or not (false).
    SetAdmin {
        name: String,
        #[arg(action = ArgAction::Set, value_name = "true|false")]
        admin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RobotCommand {
    /// A project's robots, or the system robots without --project.
    /// Sort fields: name, created_at, expires_at.
    List {
        /// The robot's project; without it, a system robot.
        #[arg(long, short)]
        project: Option<String>,
        /// Names containing this.
        #[arg(long, short)]
        query: Option<String>,
        #[command(flatten)]
        paging: PagingArgs,
    },
    /// Create a robot and print its name and secret (shown only this once).
    ///
    /// A project robot (--project P) takes permissions `[REPOSITORY:]ACTIONS`,
    /// the repository named within the project: `pull`, `app:pull,push`.
    /// A system robot takes `PROJECT[/REPOSITORY]:ACTIONS`: `*:pull` (every
    /// project), `team/app:pull,push`. Actions: pull, push, delete, read, scan.
    Create {
        /// The short name; the robot signs in as robot$<project>+<name>, or robot$<name>.
        name: String,
        /// The robot's project; without it, a system robot.
        #[arg(long, short)]
        project: Option<String>,
        /// What the robot is for.
        #[arg(long)]
        description: Option<String>,
        /// What the robot may do; repeat for several.
        #[arg(long = "permission", value_name = "SPEC", required = true, value_parser = parse_permission_spec)]
        permissions: Vec<PermissionSpec>,
        /// When it stops working (RFC 3339, such as 2030-01-02T03:04:05Z); never without.
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
    },
    /// Show a robot.
    Show {
        name: String,
        /// The robot's project; without it, a system robot.
        #[arg(long, short)]
        project: Option<String>,
    },
    /// Delete a robot.
    Delete {
        name: String,
        /// The robot's project; without it, a system robot.
        #[arg(long, short)]
        project: Option<String>,
    },
    /// Give a robot a new secret (printed only this once); the old one stops working.
    RefreshSecret {
        name: String,
        /// The robot's project; without it, a system robot.
        #[arg(long, short)]
        project: Option<String>,
    },
    /// Disable a robot.
    Disable {
        name: String,
        /// The robot's project; without it, a system robot.
        #[arg(long, short)]
        project: Option<String>,
    },
    /// Enable a disabled robot.
    Enable {
        name: String,
        /// The robot's project; without it, a system robot.
        #[arg(long, short)]
        project: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Sign new tokens with a new key; tokens signed before stay valid until they expire.
    RotateKey,
}

/// `key=value`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// A robot permission as written: `[TARGET:]ACTIONS`; what the target
/// means (a repository, or a project and repository) depends on the robot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionSpec {
    pub target: Option<String>,
    pub actions: Vec<Action>,
}

/// Parses `[TARGET:]ACTION[,ACTION...]`.
pub fn parse_permission_spec(s: &str) -> Result<PermissionSpec, String> {
    let (target, actions) = match s.split_once(':') {
        Some((t, a)) => (Some(t.trim()), a),
        None => (None, s),
    };
    if target.is_some_and(|t| t.is_empty() || t.contains(char::is_whitespace)) {
        return Err(format!("{s:?}: the part before `:` names no repository"));
    }
    let mut parsed = Vec::new();
    for a in actions.split(',').map(str::trim) {
        let Some(action) = Action::ALL.into_iter().find(|x| x.as_str() == a) else {
            return Err(format!(
                "{s:?}: unknown action {a:?}; actions are pull, push, delete, read, scan"
            ));
        };
        if !parsed.contains(&action) {
            parsed.push(action);
        }
    }
    Ok(PermissionSpec {
        target: target.map(str::to_owned),
        actions: parsed,
    })
}

/// The permissions of a new robot: within `project` for a project robot, or
/// across projects for a system robot (whose specs must name the project).
pub fn robot_permissions(
    project: Option<&str>,
    specs: &[PermissionSpec],
) -> Result<NewRobot, String> {
    match project {
        Some(project) => Ok(NewRobot::Project {
            project: project.to_owned(),
            permissions: specs
                .iter()
                .map(|s| ProjectPermission {
                    repository: s.target.clone(),
                    actions: s.actions.clone(),
                })
                .collect(),
        }),
        None => {
            let permissions = specs
                .iter()
                .map(|s| {
                    let Some(target) = &s.target else {
                        return Err(
                            "a system robot's permission names its project: PROJECT[/REPOSITORY]:ACTIONS \
                             (`*` for every project), or give --project to create a project robot"
                                .to_owned(),
                        );
                    };
                    let (project, repository) = match target.split_once('/') {
                        Some((p, r)) => (p.to_owned(), Some(r.to_owned())),
                        None => (target.clone(), None),
                    };
                    Ok(Permission {
                        project,
                        repository,
                        actions: s.actions.clone(),
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(NewRobot::System { permissions })
        }
    }
}

/// A robot's project and short name: `robot$team+ci` and `robot$ci` are
/// understood too, and must agree with `--project`.
pub fn robot_name(name: &str, project: Option<&str>) -> Result<(Option<String>, String), String> {
    let Some(rest) = name.strip_prefix("robot$") else {
        return Ok((project.map(str::to_owned), name.to_owned()));
    };
    let (from_name, short) = match rest.split_once('+') {
        Some((p, n)) => (Some(p), n),
        None => (None, rest),
    };
    if project.is_some() && project != from_name {
        return Err(format!("{name:?} is not a robot of project {project:?}"));
    }
    Ok((from_name.map(str::to_owned), short.to_owned()))
}

/// A usage error found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// Runs one client command; the process's exit code.
pub fn run(command: Command) -> i32 {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(Box::pin(execute(command))));
    output::flush();
    match result {
        Ok(()) => 0,
        Err(e) => {
            output::error(&format!("{e:#}"));
            if let Some(hinted) = e.downcast_ref::<Hinted>() {
                output::error(&hinted.hint);
            }
            if e.is::<UsageError>() { 2 } else { 1 }
        }
    }
}

/// Where the credentials in use came from.
#[derive(Debug)]
enum Source {
    Env,
    File(PathBuf),
}

/// The credential file: `--authfile` / `REGISTRY_AUTH_FILE`, else the default.
fn authfile_path(options: &Options) -> anyhow::Result<PathBuf> {
    match &options.authfile {
        Some(p) => Ok(p.clone()),
        None => authfile::default_path(|name| std::env::var_os(name)),
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The caller's credentials for `options.registry`, and where they came from.
fn credentials(options: &Options) -> anyhow::Result<Option<(Credentials, Source)>> {
    match (
        env_nonempty("WHARF_USERNAME"),
        env_nonempty("WHARF_PASSWORD"),
    ) {
        (Some(username), Some(password)) => {
            return Ok(Some((Credentials { username, password }, Source::Env)));
        }
        (Some(_), None) => bail!("WHARF_USERNAME is set but WHARF_PASSWORD is not"),
        (None, Some(_)) => bail!("WHARF_PASSWORD is set but WHARF_USERNAME is not"),
        (None, None) => {}
    }
    let path = match authfile_path(options) {
        Ok(p) => p,
        // No file can be found: sign nothing.
        Err(_) => return Ok(None),
    };
    let key = options.registry.key();
    match AuthFile::load(&path)?.get(&key)? {
        Stored::Credentials(c) => Ok(Some((c, Source::File(path)))),
        Stored::Helper(helper) => {
            output::note(&format!(
                "wharf: the credentials for {key} are kept by the credential helper {helper:?}, \
                 which wharf does not call; run `wharf login` or set WHARF_USERNAME and WHARF_PASSWORD"
            ));
            Ok(None)
        }
        Stored::Nothing => Ok(None),
    }
}

/// All of stdin, less one trailing newline.
fn read_stdin_secret(what: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the {what} from stdin"))?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if text.is_empty() {
        bail!("the {what} read from stdin is empty");
    }
    Ok(text.to_owned())
}

/// One line of stdin, after `prompt` on stderr if stdin is a terminal.
fn read_line(prompt: &str, what: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        output::prompt(prompt);
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("cannot read the {what} from stdin"))?;
    let line = line.trim_end_matches(['\n', '\r']);
    if line.is_empty() {
        bail!("no {what} on stdin");
    }
    Ok(line.to_owned())
}

/// A client signed with the caller's credentials, if any.
fn client(options: &Options) -> anyhow::Result<(Client, Option<Source>)> {
    let (credentials, source) = match credentials(options)? {
        Some((c, s)) => (Some(c), Some(s)),
        None => (None, None),
    };
    let client = Client::new(options.registry.clone(), credentials, options.insecure)?;
    Ok((client, source))
}

/// An error and what to do about it, printed on the line after it.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
struct Hinted {
    error: ApiError,
    hint: String,
}

/// An API error, with a hint when signing in would help.
fn api_failure(client: &Client, error: ApiError) -> anyhow::Error {
    if error.status() == Some(reqwest::StatusCode::UNAUTHORIZED) && client.credentials().is_none() {
        let hint = format!(
            "no credentials for {}: run `wharf login --registry {}`, or set WHARF_USERNAME and WHARF_PASSWORD",
            client.registry().key(),
            client.registry()
        );
        return Hinted { error, hint }.into();
    }
    error.into()
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Login {
            options,
            username,
            password_stdin,
        } => login(&options, username, password_stdin).await,
        Command::Logout { options } => logout(&options),
        Command::Project { options, command } => {
            let (client, _) = client(&options)?;
            project(&client, options.json, command)
                .await
                .map_err(|e| into_failure(&client, e))
        }
        Command::User { options, command } => {
            let (client, source) = client(&options)?;
            user(&client, &options, source, command)
                .await
                .map_err(|e| into_failure(&client, e))
        }
        Command::Robot { options, command } => {
            let (client, _) = client(&options)?;
            robot(&client, options.json, command)
                .await
                .map_err(|e| into_failure(&client, e))
        }
        Command::System { options, command } => {
            let (client, _) = client(&options)?;
            match command {
                SystemCommand::RotateKey => {
                    let reply = client
                        .rotate_signing_key()
                        .await
                        .map_err(|e| api_failure(&client, e))?;
                    output::reply(&reply, options.json, |k| {
                        output::line(&format!("new tokens are signed with key {}", k.key_id));
                    });
                    Ok(())
                }
            }
        }
        Command::Gc { options, command } => {
            let (client, _) = client(&options)?;
            lifecycle::gc(&client, options.json, command)
                .await
                .map_err(|e| into_failure(&client, e))
        }
        Command::Integrity { options, command } => {
            let (client, _) = client(&options)?;
            lifecycle::integrity(&client, options.json, command)
                .await
                .map_err(|e| into_failure(&client, e))
        }
        Command::Retention { options, command } => {
            let (client, _) = client(&options)?;
            lifecycle::retention(&client, options.json, command)
                .await
                .map_err(|e| into_failure(&client, e))
        }
        Command::Immutability { options, command } => {
            let (client, _) = client(&options)?;
            lifecycle::immutability(&client, options.json, command)
                .await
                .map_err(|e| into_failure(&client, e))
        }
        Command::Quota { options, command } => {
            let (client, _) = client(&options)?;
            lifecycle::quota(&client, options.json, command)
                .await
                .map_err(|e| into_failure(&client, e))
        }
        Command::Promote { options, from, to } => {
            let (client, _) = client(&options)?;
            promotion::promote(&client, options.json, from, to)
                .await
                .map_err(|e| into_failure(&client, e))
        }
        Command::Tag { options, command } => {
            let (client, _) = client(&options)?;
            promotion::tag(&client, options.json, command)
                .await
                .map_err(|e| into_failure(&client, e))
        }
        Command::Webhook { options, command } => {
            let (client, _) = client(&options)?;
            webhooks::webhook(&client, options.json, command)
                .await
                .map_err(|e| into_failure(&client, e))
        }
    }
}

/// Adds the sign-in hint to API errors.
fn into_failure(client: &Client, e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<ApiError>() {
        Ok(api) => api_failure(client, api),
        Err(other) => other,
    }
}

async fn login(
    options: &Options,
    username: Option<String>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let username = match username.filter(|u| !u.is_empty()) {
        Some(u) => u,
        None if std::io::stdin().is_terminal() && !password_stdin => {
            read_line("Username: ", "user name")?
        }
        None => return Err(usage("give the user name with -u (or WHARF_USERNAME)")),
    };
    let password = if password_stdin {
        read_stdin_secret("password")?
    } else if let Some(p) = env_nonempty("WHARF_PASSWORD") {
        p
    } else if std::io::stdin().is_terminal() {
        read_line("Password: ", "password")?
    } else {
        return Err(usage(
            "no password: pass --password-stdin and write it to stdin, or set WHARF_PASSWORD",
        ));
    };
    let path = authfile_path(options)?;
    // Read the file before signing in: a file that cannot be updated
    // should fail the command before the registry records a sign-in.
    let mut file = AuthFile::load(&path)?;
    let credentials = Credentials { username, password };
    let client = Client::new(
        options.registry.clone(),
        Some(credentials.clone()),
        options.insecure,
    )?;
    let me = client.current_user().await?;
    let key = options.registry.key();
    if let Stored::Helper(helper) = file.get(&key)? {
        output::note(&format!(
            "wharf: note: docker reads the credentials for {key} from the credential helper {helper:?}, \
             not from the entry written here; podman and skopeo read this entry"
        ));
    }
    file.set(&key, &credentials);
    file.save()?;
    output::reply(&me, options.json, |me| {
        output::line(&format!("Signed in to {key} as {}.", me.name));
    });
    output::note(&format!("Credentials stored in {}", path.display()));
    Ok(())
}

fn logout(options: &Options) -> anyhow::Result<()> {
    let path = authfile_path(options)?;
    let key = options.registry.key();
    let mut file = AuthFile::load(&path)?;
    if file.remove(&key) {
        file.save()?;
        if !options.json {
            output::line(&format!(
                "Removed the credentials for {key} from {}.",
                path.display()
            ));
        }
    } else if !options.json {
        output::line(&format!("No credentials for {key} in {}.", path.display()));
    }
    if env_nonempty("WHARF_USERNAME").is_some() {
        output::note("wharf: note: WHARF_USERNAME and WHARF_PASSWORD still sign your requests");
    }
    Ok(())
}

async fn project(client: &Client, json: bool, command: ProjectCommand) -> anyhow::Result<()> {
    match command {
        ProjectCommand::List {
            query,
            visibility,
            paging,
        } => {
            let reply = client
                .list_projects(query.as_deref(), visibility.get(), &paging.paging())
                .await?;
            output::reply(&reply, json, output::projects);
        }
        ProjectCommand::Create {
            name,
            public,
            description,
            labels,
        } => {
            let reply = client
                .create_project(&NewProject {
                    name,
                    public,
                    description,
                    labels: (!labels.is_empty()).then(|| labels.into_iter().collect()),
                })
                .await?;
            output::reply(&reply, json, |p| {
                let visibility = if p.public { "public" } else { "private" };
                output::line(&format!("Created {visibility} project {}.", p.name));
            });
        }
        ProjectCommand::Show { name } => {
            let reply = client.project(&name).await?;
            output::reply(&reply, json, output::project);
        }
        ProjectCommand::Update {
            name,
            visibility,
            description,
            labels,
            clear_labels,
        } => {
            let labels = if clear_labels {
                Some(Default::default())
            } else {
                (!labels.is_empty()).then(|| labels.into_iter().collect())
            };
            let changes = ProjectChanges {
                public: visibility.get(),
                description,
                labels,
            };
            let reply = client.update_project(&name, &changes).await?;
            output::reply(&reply, json, output::project);
        }
        ProjectCommand::Delete { name } => {
            client.delete_project(&name).await?;
            if !json {
                output::line(&format!("Deleted project {name}."));
            }
        }
        ProjectCommand::Members { name, paging } => {
            let reply = client.list_members(&name, &paging.paging()).await?;
            output::reply(&reply, json, output::members);
        }
        ProjectCommand::AddMember {
            name,
            member,
            role,
            repository,
        } => {
            let member = match (member.user, member.group) {
                (Some(u), _) => MemberRef::User(u),
                (None, Some(g)) => MemberRef::Group(g),
                (None, None) => return Err(usage("give --user or --group")),
            };
            if let Some(r) = &repository
                && r.starts_with(&format!("{name}/"))
            {
                output::note(&format!(
                    "wharf: note: --repository is the name within the project: {r:?} means {name}/{r}"
                ));
            }
            let reply = client
                .add_member(
                    &name,
                    &NewMember {
                        member,
                        repository,
                        role,
                    },
                )
                .await?;
            output::reply(&reply, json, output::member);
        }
        ProjectCommand::SetRole { name, id, role } => {
            let reply = client.set_member_role(&name, id, role).await?;
            output::reply(&reply, json, output::member);
        }
        ProjectCommand::RemoveMember { name, id } => {
            client.remove_member(&name, id).await?;
            if !json {
                output::line(&format!("Removed member {id} from project {name}."));
            }
        }
    }
    Ok(())
}

/// The first 24 characters of a generated 256-bit secret: 144 random bits,
/// URL-safe.
fn generated_password() -> String {
    auth::secret::generate_secret().chars().take(24).collect()
}

async fn user(
    client: &Client,
    options: &Options,
    source: Option<Source>,
    command: UserCommand,
) -> anyhow::Result<()> {
    let json = options.json;
    match command {
        UserCommand::List { query, paging } => {
            let reply = client
                .list_users(query.as_deref(), &paging.paging())
                .await?;
            output::reply(&reply, json, output::users);
        }
        UserCommand::Create {
            name,
            email,
            full_name,
            admin,
            password_stdin,
        } => {
            let (password, generated) = if password_stdin {
                (read_stdin_secret("password")?, false)
            } else {
                (generated_password(), true)
            };
            let reply = client
                .create_user(&NewUser {
                    name,
                    password: password.clone(),
                    email,
                    full_name,
                    admin,
                })
                .await?;
            if json {
                if generated {
                    output::json(&with_field(&reply.body, "password", &password));
                } else {
                    output::json(&reply.body);
                }
            } else {
                let u = &reply.data;
                let admin = if u.admin {
                    " (system administrator)"
                } else {
                    ""
                };
                output::line(&format!("Created user {}{admin}.", u.name));
                if generated {
                    output::line(&format!("password: {password}"));
                    output::note("The password is shown only this once.");
                }
            }
        }
        UserCommand::Show { name } => {
            let reply = client.user(&name).await?;
            output::reply(&reply, json, output::user);
        }
        UserCommand::Whoami => {
            if client.credentials().is_none() {
                bail!(
                    "not signed in to {}: run `wharf login` or set WHARF_USERNAME and WHARF_PASSWORD",
                    client.registry().key()
                );
            }
            let reply = client.current_user().await?;
            output::reply(&reply, json, output::current_user);
        }
        UserCommand::Passwd { name } => {
            let signed_in = client.credentials().cloned();
            let name = match (name, &signed_in) {
                (Some(n), _) => n,
                (None, Some(c)) => c.username.clone(),
                (None, None) => bail!(
                    "not signed in to {}: name the user, or run `wharf login` first",
                    client.registry().key()
                ),
            };
            let own = signed_in.as_ref().filter(|c| c.username == name);
            let new = read_line("New password: ", "new password")?;
            client
                .change_password(&name, own.map(|c| c.password.as_str()), &new)
                .await?;
            if !json {
                output::line(&format!("Changed the password of {name}."));
            }
            if let Some(own) = own {
                match source {
                    Some(Source::File(path)) => {
                        let mut file = AuthFile::load(&path)?;
                        file.set(
                            &client.registry().key(),
                            &Credentials {
                                username: own.username.clone(),
                                password: new,
                            },
                        );
                        file.save()?;
                        output::note(&format!("Updated the credentials in {}", path.display()));
                    }
                    Some(Source::Env) => {
                        output::note("wharf: note: WHARF_PASSWORD still holds the old password");
                    }
                    None => {}
                }
            }
        }
        UserCommand::Delete { name } => {
            client.delete_user(&name).await?;
            if !json {
                output::line(&format!("Deleted user {name}."));
            }
        }
        UserCommand::Disable { name } => {
            set_user(client, json, &name, |c| c.disabled = Some(true)).await?;
        }
        UserCommand::Enable { name } => {
            set_user(client, json, &name, |c| c.disabled = Some(false)).await?;
        }
        UserCommand::SetAdmin { name, admin } => {
            set_user(client, json, &name, |c| c.admin = Some(admin)).await?;
        }
    }
    Ok(())
}

/// A JSON object's text with one more string field at its end.
fn with_field(object: &str, key: &str, value: &str) -> String {
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    let field = format!("{}:{}", quoted(key), quoted(value));
    let object = object.trim();
    match object.strip_suffix('}') {
        Some(rest) if rest.trim() == "{" => format!("{{{field}}}"),
        Some(rest) => format!("{rest},{field}}}"),
        None => object.to_owned(),
    }
}

async fn set_user(
    client: &Client,
    json: bool,
    name: &str,
    change: impl FnOnce(&mut UserChanges),
) -> anyhow::Result<()> {
    let mut changes = UserChanges::default();
    change(&mut changes);
    let reply = client.update_user(name, &changes).await?;
    output::reply(&reply, json, output::user);
    Ok(())
}

async fn robot(client: &Client, json: bool, command: RobotCommand) -> anyhow::Result<()> {
    let resolve = |name: &str, project: Option<&str>| robot_name(name, project).map_err(usage);
    match command {
        RobotCommand::List {
            project,
            query,
            paging,
        } => {
            let reply = client
                .list_robots(project.as_deref(), query.as_deref(), &paging.paging())
                .await?;
            output::reply(&reply, json, output::robots);
        }
        RobotCommand::Create {
            name,
            project,
            description,
            permissions,
            expires_at,
        } => {
            let (project, name) = resolve(&name, project.as_deref())?;
            let robot = robot_permissions(project.as_deref(), &permissions).map_err(usage)?;
            if let NewRobot::Project {
                project,
                permissions,
            } = &robot
            {
                for r in permissions.iter().filter_map(|p| p.repository.as_deref()) {
                    if r.starts_with(&format!("{project}/")) {
                        output::note(&format!(
                            "wharf: note: a project robot's repositories are named within the project: \
                             {r:?} means {project}/{r}"
                        ));
                    }
                }
            }
            let reply = client
                .create_robot(&name, &robot, description.as_deref(), expires_at.as_deref())
                .await?;
            secret(&reply, json);
        }
        RobotCommand::Show { name, project } => {
            let (project, name) = resolve(&name, project.as_deref())?;
            let reply = client.robot(project.as_deref(), &name).await?;
            output::reply(&reply, json, output::robot);
        }
        RobotCommand::Delete { name, project } => {
            let (project, name) = resolve(&name, project.as_deref())?;
            client.delete_robot(project.as_deref(), &name).await?;
            if !json {
                output::line(&format!("Deleted robot {name}."));
            }
        }
        RobotCommand::RefreshSecret { name, project } => {
            let (project, name) = resolve(&name, project.as_deref())?;
            let reply = client
                .refresh_robot_secret(project.as_deref(), &name)
                .await?;
            secret(&reply, json);
        }
        RobotCommand::Disable { name, project } => {
            let (project, name) = resolve(&name, project.as_deref())?;
            let reply = client
                .set_robot_disabled(project.as_deref(), &name, true)
                .await?;
            output::reply(&reply, json, output::robot);
        }
        RobotCommand::Enable { name, project } => {
            let (project, name) = resolve(&name, project.as_deref())?;
            let reply = client
                .set_robot_disabled(project.as_deref(), &name, false)
                .await?;
            output::reply(&reply, json, output::robot);
        }
    }
    Ok(())
}

/// A robot's name and its new secret, which the registry never shows again.
fn secret(reply: &api::Reply<api::RobotWithSecret>, json: bool) {
    output::reply(reply, json, |r| {
        output::fields(&[("name", r.robot.name.clone()), ("secret", r.secret.clone())]);
        output::note("Store the secret now: it will not be shown again.");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_specs() {
        let spec = |s| parse_permission_spec(s).unwrap();
        assert_eq!(
            spec("pull"),
            PermissionSpec {
                target: None,
                actions: vec![Action::Pull]
            }
        );
        assert_eq!(
            spec("app:pull,push,pull"),
            PermissionSpec {
                target: Some("app".into()),
                actions: vec![Action::Pull, Action::Push]
            }
        );
        for bad in ["", ":pull", "app:", "app:pul", "a b:pull", "pull,,push"] {
            assert!(parse_permission_spec(bad).is_err(), "{bad:?} accepted");
        }

        let project =
            robot_permissions(Some("team"), &[spec("pull"), spec("tools/app:push")]).unwrap();
        let NewRobot::Project { permissions, .. } = project else {
            panic!("not a project robot");
        };
        assert_eq!(permissions[0].repository, None);
        assert_eq!(permissions[1].repository.as_deref(), Some("tools/app"));

        let system =
            robot_permissions(None, &[spec("*:pull"), spec("team/a/b:pull,push")]).unwrap();
        let NewRobot::System { permissions } = system else {
            panic!("not a system robot");
        };
        assert_eq!(
            permissions[0],
            Permission {
                project: "*".into(),
                repository: None,
                actions: vec![Action::Pull]
            }
        );
        assert_eq!(permissions[1].project, "team");
        assert_eq!(permissions[1].repository.as_deref(), Some("a/b"));
        assert!(robot_permissions(None, &[spec("pull")]).is_err());
    }

    #[test]
    fn robot_names() {
        assert_eq!(
            robot_name("ci", Some("team")).unwrap(),
            (Some("team".into()), "ci".into())
        );
        assert_eq!(
            robot_name("robot$team+ci", None).unwrap(),
            (Some("team".into()), "ci".into())
        );
        assert_eq!(robot_name("robot$ops", None).unwrap(), (None, "ops".into()));
        assert!(robot_name("robot$team+ci", Some("other")).is_err());
    }

    #[derive(Debug, clap::Parser)]
    struct Top {
        #[command(subcommand)]
        command: Command,
    }

    #[test]
    fn the_command_line_parses() {
        use clap::{CommandFactory, Parser};
        Top::command().debug_assert();
        let parse = |args: &[&str]| {
            Top::try_parse_from(std::iter::once("wharf").chain(args.iter().copied()))
        };
        let top = parse(&["project", "--json", "list", "--registry", "r.example:5000"]).unwrap();
        let Command::Project { options, command } = top.command else {
            panic!("not a project command");
        };
        assert!(options.json);
        assert_eq!(options.registry.to_string(), "https://r.example:5000");
        assert!(matches!(command, ProjectCommand::List { .. }));
        let top = parse(&[
            "robot",
            "create",
            "ci",
            "-p",
            "team",
            "--permission",
            "pull",
            "--permission",
            "app:push",
        ])
        .unwrap();
        let Command::Robot {
            command: RobotCommand::Create { permissions, .. },
            ..
        } = top.command
        else {
            panic!("not robot create");
        };
        assert_eq!(permissions.len(), 2);
        for bad in [
            &["project", "set-role", "team", "1", "owner"][..],
            &["project", "add-member", "team", "--role", "guest"],
            &[
                "project",
                "add-member",
                "team",
                "--user",
                "a",
                "--group",
                "g",
                "--role",
                "guest",
            ],
            &["project", "list", "--public", "--private"],
            &["robot", "create", "ci", "--permission", "pull,fly"],
            &["robot", "create", "ci"],
            &["user", "set-admin", "bob", "yes"],
            &["project", "list", "--page-size", "101"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_field_is_added_to_an_object() {
        assert_eq!(
            with_field(r#"{"name":"bob"}"#, "password", "p\"w"),
            r#"{"name":"bob","password":"p\"w"}"#
        );
        assert_eq!(with_field("{ }", "k", "v"), r#"{"k":"v"}"#);
    }

    #[test]
    fn labels() {
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_label("a=").unwrap(), ("a".into(), "".into()));
        assert!(parse_label("=b").is_err());
        assert!(parse_label("ab").is_err());
    }
}
