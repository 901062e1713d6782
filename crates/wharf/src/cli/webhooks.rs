//! `wharf webhook`: a project's webhook policies and their delivery log
//! from the command line. Secrets (the authorization header, the signing
//! secret) are read from environment variables, never from arguments,
//! which other users of the machine can see.

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::api::{Client, Reply};
use super::output::{items, text};
use super::{output, usage};

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// A project's webhook policies.
    List { project: String },
    /// Create a webhook policy (project administrators).
    Create {
        project: String,
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Replace a webhook policy; secrets not given are kept.
    Update {
        project: String,
        id: i64,
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// One webhook policy.
    Show { project: String, id: i64 },
    /// Delete a webhook policy and its delivery log.
    Delete { project: String, id: i64 },
    /// A policy's deliveries, newest first.
    Deliveries {
        project: String,
        id: i64,
        /// Only `pending`, `succeeded` or `failed` ones.
        #[arg(long)]
        status: Option<String>,
        /// How many (1 to 100).
        #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
    },
    /// One delivery, with the body sent.
    Delivery {
        project: String,
        id: i64,
        delivery: i64,
    },
    /// Send an ended delivery again, now.
    Redeliver {
        project: String,
        id: i64,
        delivery: i64,
    },
}

/// Where a policy sends what.
#[derive(Debug, Args)]
pub struct Target {
    /// Where events are posted (http:// or https://).
    #[arg(long)]
    url: String,
    /// An event type to send (repeat): artifact.pushed, artifact.pulled,
    /// artifact.deleted, tag.created, tag.moved, tag.deleted, quota.warning,
    /// quota.exceeded, signature.added, retention.finished.
    #[arg(long = "event", required = true, value_name = "TYPE")]
    events: Vec<String>,
    /// `harbor` (Harbor's payload) or `cloudevents` (CloudEvents 1.0).
    #[arg(long, default_value = "harbor")]
    format: String,
    /// Environment variable holding the `Authorization` header to send.
    #[arg(long, value_name = "VAR")]
    auth_header_env: Option<String>,
    /// Environment variable holding the HMAC-SHA256 signing secret.
    #[arg(long, value_name = "VAR")]
    secret_env: Option<String>,
    /// Accept any TLS certificate from the target.
    #[arg(long)]
    skip_tls_verify: bool,
    /// Create or keep it disabled.
    #[arg(long)]
    disabled: bool,
}

impl Target {
    fn body(self, name: String) -> anyhow::Result<Value> {
        let from_env = |var: &str, what: &str| {
            std::env::var(var).with_context(|| format!("the {what} variable {var} is not set"))
        };
        let mut body = Map::new();
        body.insert("name".into(), json!(name));
        body.insert("url".into(), json!(self.url));
        body.insert("events".into(), json!(self.events));
        body.insert("format".into(), json!(self.format));
        body.insert("skip_tls_verify".into(), json!(self.skip_tls_verify));
        body.insert("enabled".into(), json!(!self.disabled));
        if let Some(var) = &self.auth_header_env {
            body.insert("auth_header".into(), json!(from_env(var, "auth header")?));
        }
        if let Some(var) = &self.secret_env {
            body.insert("secret".into(), json!(from_env(var, "secret")?));
        }
        Ok(Value::Object(body))
    }
}

pub async fn webhook(client: &Client, json: bool, command: WebhookCommand) -> anyhow::Result<()> {
    match command {
        WebhookCommand::List { project } => {
            let reply: Reply<Value> = client
                .call(Method::GET, &["projects", &project, "webhooks"], &[], None)
                .await?;
            output::reply(&reply, json, |list| {
                let rows: Vec<Vec<String>> = items(list)
                    .iter()
                    .map(|p| {
                        vec![
                            p["id"].to_string(),
                            text(&p["name"]),
                            text(&p["url"]),
                            text(&p["format"]),
                            if p["enabled"].as_bool() == Some(true) {
                                "yes".into()
                            } else {
                                "no".into()
                            },
                            events(p),
                        ]
                    })
                    .collect();
                output::table(&["ID", "NAME", "URL", "FORMAT", "ENABLED", "EVENTS"], &rows);
            });
        }
        WebhookCommand::Create {
            project,
            name,
            target,
        } => {
            let body = target.body(name)?;
            let reply: Reply<Value> = client
                .call(
                    Method::POST,
                    &["projects", &project, "webhooks"],
                    &[],
                    Some(body),
                )
                .await?;
            output::reply(&reply, json, |p| {
                output::line(&format!(
                    "Created webhook {} ({}) in {project}.",
                    p["id"],
                    text(&p["name"])
                ));
            });
        }
        WebhookCommand::Update {
            project,
            id,
            name,
            target,
        } => {
            let body = target.body(name)?;
            let id = id.to_string();
            let reply: Reply<Value> = client
                .call(
                    Method::PUT,
                    &["projects", &project, "webhooks", &id],
                    &[],
                    Some(body),
                )
                .await?;
            output::reply(&reply, json, show_policy);
        }
        WebhookCommand::Show { project, id } => {
            let id = id.to_string();
            let reply: Reply<Value> = client
                .call(
                    Method::GET,
                    &["projects", &project, "webhooks", &id],
                    &[],
                    None,
                )
                .await?;
            output::reply(&reply, json, show_policy);
        }
        WebhookCommand::Delete { project, id } => {
            let id = id.to_string();
            client
                .call_empty(
                    Method::DELETE,
                    &["projects", &project, "webhooks", &id],
                    None,
                )
                .await?;
            if !json {
                output::line(&format!("Deleted webhook {id} of {project}."));
            }
        }
        WebhookCommand::Deliveries {
            project,
            id,
            status,
            limit,
        } => {
            if let Some(s) = &status
                && !matches!(s.as_str(), "pending" | "succeeded" | "failed")
            {
                return Err(usage("--status is pending, succeeded or failed"));
            }
            let id = id.to_string();
            let mut query = vec![("limit", limit.to_string())];
            if let Some(s) = status {
                query.push(("status", s));
            }
            let reply: Reply<Value> = client
                .call(
                    Method::GET,
                    &["projects", &project, "webhooks", &id, "deliveries"],
                    &query,
                    None,
                )
                .await?;
            output::reply(&reply, json, |list| {
                let rows: Vec<Vec<String>> = items(list)
                    .iter()
                    .map(|d| {
                        vec![
                            d["id"].to_string(),
                            text(&d["event_type"]),
                            text(&d["status"]),
                            d["attempts"].to_string(),
                            optional(&d["response_code"]),
                            optional(&d["latency_ms"]),
                            text(&d["created_at"]),
                            optional(&d["error"]),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "ID", "EVENT", "STATUS", "ATTEMPTS", "CODE", "MS", "CREATED", "ERROR",
                    ],
                    &rows,
                );
            });
        }
        WebhookCommand::Delivery {
            project,
            id,
            delivery,
        } => {
            let (id, delivery) = (id.to_string(), delivery.to_string());
            let reply: Reply<Value> = client
                .call(
                    Method::GET,
                    &[
                        "projects",
                        &project,
                        "webhooks",
                        &id,
                        "deliveries",
                        &delivery,
                    ],
                    &[],
                    None,
                )
                .await?;
            output::reply(&reply, json, |d| {
                output::fields(&[
                    ("event", text(&d["event_type"])),
                    ("status", text(&d["status"])),
                    ("attempts", d["attempts"].to_string()),
                    ("response code", optional(&d["response_code"])),
                    ("error", optional(&d["error"])),
                    ("created", text(&d["created_at"])),
                    ("next attempt", optional(&d["next_attempt_at"])),
                ]);
                output::line("body:");
                output::json(d["body"].as_str().unwrap_or_default());
            });
        }
        WebhookCommand::Redeliver {
            project,
            id,
            delivery,
        } => {
            let (id, delivery) = (id.to_string(), delivery.to_string());
            let reply: Reply<Value> = client
                .call(
                    Method::POST,
                    &[
                        "projects",
                        &project,
                        "webhooks",
                        &id,
                        "deliveries",
                        &delivery,
                        "redeliver",
                    ],
                    &[],
                    None,
                )
                .await?;
            output::reply(&reply, json, |_| {
                output::line(&format!("Delivery {delivery} will be sent again now."));
            });
        }
    }
    Ok(())
}

fn show_policy(p: &Value) {
    let set = |v: &Value| {
        if v.as_bool() == Some(true) {
            "set"
        } else {
            "not set"
        }
    };
    output::fields(&[
        ("id", p["id"].to_string()),
        ("name", text(&p["name"])),
        ("url", text(&p["url"])),
        ("events", events(p)),
        ("format", text(&p["format"])),
        ("auth header", set(&p["auth_header_set"]).into()),
        ("secret", set(&p["secret_set"]).into()),
        ("skip TLS verify", p["skip_tls_verify"].to_string()),
        ("enabled", p["enabled"].to_string()),
        ("updated", text(&p["updated_at"])),
    ]);
}

fn optional(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn events(p: &Value) -> String {
    p["events"]
        .as_array()
        .map(|e| e.iter().map(text).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}
