//! `wharf promote` and `wharf tag`: moving images between environments
//! from the command line. A promotion copies an artifact, with its
//! signatures and SBOMs, to another repository or project on the server
//! (no blob is copied); a tag's history shows every movement, and a
//! rollback points it back at an earlier digest.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::api::{Client, Reply};
use super::output::{items, text};
use super::{output, usage};

#[derive(Debug, Subcommand)]
pub enum TagCommand {
    /// A repository's tags with their digests: newest version first with
    /// `--sort -semver`, newest push first with `--sort -pushed_at`.
    List {
        /// PROJECT/REPOSITORY, as clients pull it.
        repository: String,
        /// `name`, `pushed_at`, `pulled_at` or `semver`; `-field` for descending.
        #[arg(long, value_name = "FIELD", allow_hyphen_values = true)]
        sort: Option<String>,
        /// Only tags matching this glob (`v1.*`), or regular expression after `re:`.
        #[arg(long)]
        pattern: Option<String>,
        /// How many (1 to 100).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
    },
    /// Every movement of a tag, newest first: who pointed it where, when.
    History {
        /// PROJECT/REPOSITORY:TAG
        tag: String,
        /// How many (1 to 100).
        #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
    },
    /// Point a tag back at the digest it had before (or at --to).
    Rollback {
        /// PROJECT/REPOSITORY:TAG
        tag: String,
        /// The digest to point it at; by default the most recent earlier
        /// one that is still stored.
        #[arg(long, value_name = "DIGEST")]
        to: Option<String>,
    },
}

/// `project/repo...:tag` as (project, repository within it, tag).
fn split_tag(s: &str) -> anyhow::Result<(String, String, String)> {
    let Some((repository, tag)) = s.rsplit_once(':').filter(|(_, t)| !t.contains('/')) else {
        return Err(usage(format!("{s:?}: name a tag, PROJECT/REPOSITORY:TAG")));
    };
    let (project, within) = split_repository(repository)?;
    Ok((project, within, tag.to_owned()))
}

fn split_repository(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('/') {
        Some((project, within)) if !project.is_empty() && !within.is_empty() => {
            Ok((project.to_owned(), within.to_owned()))
        }
        _ => Err(usage(format!(
            "{s:?}: name a repository as PROJECT/REPOSITORY"
        ))),
    }
}

pub async fn promote(client: &Client, json: bool, from: String, to: String) -> anyhow::Result<()> {
    let reply: Reply<Value> = client
        .call(
            Method::POST,
            &["promote"],
            &[],
            Some(json!({ "from": from, "to": to })),
        )
        .await?;
    output::reply(&reply, json, |p| {
        output::line(&format!(
            "Promoted {} to {} ({}): {} manifests, {} of them signatures and other referrers; {} blobs linked, none copied.",
            text(&p["from"]),
            text(&p["to"]),
            text(&p["digest"]),
            p["manifests"],
            p["referrers"],
            p["blobs"]
        ));
    });
    Ok(())
}

pub async fn tag(client: &Client, json: bool, command: TagCommand) -> anyhow::Result<()> {
    match command {
        TagCommand::List {
            repository,
            sort,
            pattern,
            limit,
        } => {
            let (project, within) = split_repository(&repository)?;
            let mut query = vec![("page_size", limit.to_string())];
            if let Some(sort) = sort {
                query.push(("sort", sort));
            }
            if let Some(pattern) = pattern {
                query.push(("pattern", pattern));
            }
            let reply: Reply<Value> = client
                .call(
                    Method::GET,
                    &["projects", &project, "repositories", &within, "tags"],
                    &query,
                    None,
                )
                .await?;
            output::reply(&reply, json, |list| {
                let rows: Vec<Vec<String>> = items(list)
                    .iter()
                    .map(|t| {
                        vec![
                            text(&t["name"]),
                            text(&t["digest"]),
                            text(&t["pushed_at"]),
                            t["pulled_at"].as_str().unwrap_or("-").to_owned(),
                        ]
                    })
                    .collect();
                output::table(&["TAG", "DIGEST", "PUSHED", "PULLED"], &rows);
            });
        }
        TagCommand::History { tag, limit } => {
            let (project, within, name) = split_tag(&tag)?;
            let reply: Reply<Value> = client
                .call(
                    Method::GET,
                    &[
                        "projects",
                        &project,
                        "repositories",
                        &within,
                        "tags",
                        &name,
                        "history",
                    ],
                    &[("limit", limit.to_string())],
                    None,
                )
                .await?;
            output::reply(&reply, json, |history| {
                let rows: Vec<Vec<String>> = items(history)
                    .iter()
                    .map(|m| {
                        let stored = if m["still_stored"].as_bool() == Some(true) {
                            "yes"
                        } else {
                            "no"
                        };
                        vec![
                            text(&m["at"]),
                            text(&m["action"]),
                            m["digest"].as_str().unwrap_or("-").to_owned(),
                            m["previous_digest"].as_str().unwrap_or("-").to_owned(),
                            text(&m["actor"]),
                            stored.to_owned(),
                        ]
                    })
                    .collect();
                output::table(&["WHEN", "ACTION", "DIGEST", "FROM", "BY", "STORED"], &rows);
            });
        }
        TagCommand::Rollback { tag, to } => {
            let (project, within, name) = split_tag(&tag)?;
            let reply: Reply<Value> = client
                .call(
                    Method::POST,
                    &[
                        "projects",
                        &project,
                        "repositories",
                        &within,
                        "tags",
                        &name,
                        "rollback",
                    ],
                    &[],
                    Some(json!({ "to": to })),
                )
                .await?;
            output::reply(&reply, json, |r| {
                output::line(&format!(
                    "{tag} now points at {} (was {}).",
                    text(&r["to"]),
                    r["from"].as_str().unwrap_or("deleted")
                ));
            });
        }
    }
    Ok(())
}
