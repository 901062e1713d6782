//! What the command line prints: aligned tables and `key: value` blocks
//! for people, the API's JSON as it came for `--json`, notes and errors on
//! stderr.
//!
//! Results go to stdout; notes (a secret will not be shown again, where
//! credentials were stored) and errors go to stderr, so that the output of a
//! command can be piped while its remarks stay on the terminal.

// Printing is this module's job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

use super::api::{CurrentUser, Member, Page, Permission, Project, Reply, Robot, User};

/// Prints a JSON text (already known to be valid) indented, its keys in the
/// order they came.
pub fn json(text: &str) {
    println!("{}", indent(text));
}

/// Indents valid JSON text by two spaces per level; empty objects and
/// arrays stay `{}` and `[]`. Strings are copied as they are.
fn indent(text: &str) -> String {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', depth * 2));
    }
    let chars: Vec<char> = text.trim().chars().collect();
    let mut out = String::with_capacity(text.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                let next = chars[i..].iter().position(|n| !n.is_whitespace());
                if let Some(skip) = next.filter(|&k| chars[i + k] == close) {
                    out.push(c);
                    out.push(close);
                    i += skip + 1;
                } else {
                    depth += 1;
                    out.push(c);
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// One line of results.
pub fn line(text: &str) {
    println!("{text}");
}

/// A remark for the person at the terminal (stderr).
pub fn note(text: &str) {
    eprintln!("{text}");
}

/// A prompt on stderr, without a newline.
pub fn prompt(text: &str) {
    eprint!("{text}");
    let _ = std::io::stderr().flush();
}

/// The one line a failed command leaves on stderr.
pub fn error(text: &str) {
    eprintln!("wharf: {text}");
}

pub fn flush() {
    let _ = std::io::stdout().flush();
}

/// Rows under a header, each column as wide as its widest cell, two spaces
/// apart; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", format_table(header, rows));
}

fn format_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut text = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                text.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                text.push_str(&format!("{cell:<pad$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// `key: value` lines, the values aligned.
pub fn fields(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    for (key, value) in pairs {
        let key = format!("{key}:");
        println!("{}", format!("{key:<width$} {value}").trim_end());
    }
}

/// `N of TOTAL` under a listing that does not show everything.
pub fn paged<T>(page: &Page<T>) {
    let shown = page.items.len() as u64;
    if page.page > 1 || shown < page.total {
        let before = (page.page - 1).saturating_mul(u64::from(page.page_size));
        let mut text = format!("{shown} of {}", page.total);
        if before + shown < page.total {
            text.push_str(&format!(" (more with --page {})", page.page + 1));
        }
        println!("{text}");
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// `k=v,k2=v2`.
fn labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A permission as `wharf robot create --permission` takes it: within the
/// project for a project robot (`app:pull,push`, `pull`), with the project
/// for a system robot (`team/app:pull`, `*:pull`).
pub fn permission(p: &Permission, own_project: Option<&str>) -> String {
    let actions = p
        .actions
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let target = match (own_project, &p.repository) {
        (Some(own), None) if own == p.project => None,
        (Some(own), Some(r)) if own == p.project => Some(r.clone()),
        (_, None) => Some(p.project.clone()),
        (_, Some(r)) => Some(format!("{}/{r}", p.project)),
    };
    match target {
        Some(t) => format!("{t}:{actions}"),
        None => actions,
    }
}

/// Prints the API's JSON with `--json`, else calls `text`.
pub fn reply<T>(reply: &Reply<T>, as_json: bool, text: impl FnOnce(&T)) {
    if as_json {
        json(&reply.body);
    } else {
        text(&reply.data);
    }
}

pub fn projects(page: &Page<Project>) {
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                yes_no(p.public),
                p.repository_count.to_string(),
                or_dash(&labels(&p.labels)),
                p.description.clone(),
            ]
        })
        .collect();
    table(
        &["NAME", "PUBLIC", "REPOSITORIES", "LABELS", "DESCRIPTION"],
        &rows,
    );
    paged(page);
}

pub fn project(p: &Project) {
    fields(&[
        ("name", p.name.clone()),
        ("public", yes_no(p.public)),
        ("description", p.description.clone()),
        ("labels", labels(&p.labels)),
        ("repositories", p.repository_count.to_string()),
        ("created", p.created_at.clone()),
        ("updated", p.updated_at.clone()),
    ]);
}

fn member_row(m: &Member) -> Vec<String> {
    let (kind, who) = match (&m.user, &m.group) {
        (Some(u), _) => ("user", u.clone()),
        (None, Some(g)) => ("group", g.clone()),
        (None, None) => ("?", String::new()),
    };
    vec![
        m.id.to_string(),
        kind.to_owned(),
        m.role.as_str().to_owned(),
        m.repository.clone().unwrap_or_else(|| "*".into()),
        who,
    ]
}

const MEMBER_HEADER: [&str; 5] = ["ID", "TYPE", "ROLE", "REPOSITORY", "MEMBER"];

pub fn members(page: &Page<Member>) {
    let rows: Vec<Vec<String>> = page.items.iter().map(member_row).collect();
    table(&MEMBER_HEADER, &rows);
    paged(page);
}

pub fn member(m: &Member) {
    table(&MEMBER_HEADER, &[member_row(m)]);
}

pub fn users(page: &Page<User>) {
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|u| {
            vec![
                u.name.clone(),
                yes_no(u.admin),
                yes_no(u.disabled),
                u.source.clone(),
                u.last_login_at.clone().unwrap_or_else(|| "-".into()),
                u.email.clone(),
            ]
        })
        .collect();
    table(
        &["NAME", "ADMIN", "DISABLED", "SOURCE", "LAST LOGIN", "EMAIL"],
        &rows,
    );
    paged(page);
}

pub fn user(u: &User) {
    fields(&[
        ("name", u.name.clone()),
        ("full name", u.full_name.clone()),
        ("email", u.email.clone()),
        ("source", u.source.clone()),
        ("admin", yes_no(u.admin)),
        ("disabled", yes_no(u.disabled)),
        ("created", u.created_at.clone()),
        ("updated", u.updated_at.clone()),
        (
            "last login",
            u.last_login_at.clone().unwrap_or_else(|| "never".into()),
        ),
    ]);
}

pub fn current_user(c: &CurrentUser) {
    let kind = match (c.kind.as_str(), c.admin) {
        ("user", true) => "user, system administrator".to_owned(),
        (kind, _) => kind.to_owned(),
    };
    fields(&[("name", c.name.clone()), ("kind", kind)]);
    if !c.memberships.is_empty() {
        println!("memberships:");
        let rows: Vec<Vec<String>> = c
            .memberships
            .iter()
            .map(|m| {
                let place = match &m.repository {
                    Some(r) => format!("{}/{r}", m.project),
                    None => m.project.clone(),
                };
                vec![format!("  {place}"), m.role.as_str().to_owned()]
            })
            .collect();
        print!(
            "{}",
            format_table(&["", ""], &rows)
                .split_once('\n')
                .map_or("", |(_, rest)| rest)
        );
    }
    if !c.permissions.is_empty() {
        println!("permissions:");
        for p in &c.permissions {
            println!("  {}", permission(p, None));
        }
    }
}

fn robot_permissions(r: &Robot) -> String {
    r.permissions
        .iter()
        .map(|p| permission(p, r.project.as_deref()))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn robots(page: &Page<Robot>) {
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                yes_no(r.disabled),
                r.expires_at.clone().unwrap_or_else(|| "never".into()),
                robot_permissions(r),
                r.description.clone(),
            ]
        })
        .collect();
    table(
        &["NAME", "DISABLED", "EXPIRES", "PERMISSIONS", "DESCRIPTION"],
        &rows,
    );
    paged(page);
}

pub fn robot(r: &Robot) {
    fields(&[
        ("name", r.name.clone()),
        ("project", r.project.clone().unwrap_or_else(|| "-".into())),
        ("description", r.description.clone()),
        ("permissions", robot_permissions(r)),
        (
            "expires",
            r.expires_at.clone().unwrap_or_else(|| "never".into()),
        ),
        ("disabled", yes_no(r.disabled)),
        ("created by", r.created_by.clone()),
        ("created", r.created_at.clone()),
        ("updated", r.updated_at.clone()),
    ]);
}

/// The `items` of a listing's JSON.
pub fn items(list: &serde_json::Value) -> &[serde_json::Value] {
    list["items"].as_array().map_or(&[], Vec::as_slice)
}

/// A JSON string's text, or nothing.
pub fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::api::Action;

    #[test]
    fn tables_align_and_do_not_pad_the_last_column() {
        let text = format_table(
            &["NAME", "PUBLIC", "DESCRIPTION"],
            &[
                vec!["library".into(), "yes".into(), "".into()],
                vec!["t".into(), "no".into(), "the team".into()],
            ],
        );
        assert_eq!(
            text,
            "NAME     PUBLIC  DESCRIPTION\nlibrary  yes\nt        no      the team\n"
        );
    }

    #[test]
    fn json_is_indented_in_its_own_order() {
        let text = r#"{"z":1,"a":{"s":"x,{\"y\":[]}\\","e":{},"l":[ ]},"n":[1,{"k":null}]}"#;
        let want = r#"{
  "z": 1,
  "a": {
    "s": "x,{\"y\":[]}\\",
    "e": {},
    "l": []
  },
  "n": [
    1,
    {
      "k": null
    }
  ]
}"#;
        assert_eq!(indent(text), want);
        let reparsed: serde_json::Value = serde_json::from_str(&indent(text)).unwrap();
        assert_eq!(
            reparsed,
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
    }

    #[test]
    fn permissions_read_as_they_are_written() {
        let p = |project: &str, repository: Option<&str>, actions: &[Action]| Permission {
            project: project.into(),
            repository: repository.map(Into::into),
            actions: actions.to_vec(),
        };
        let pp = [Action::Pull, Action::Push];
        assert_eq!(permission(&p("team", None, &pp), Some("team")), "pull,push");
        assert_eq!(
            permission(&p("team", Some("app"), &[Action::Pull]), Some("team")),
            "app:pull"
        );
        assert_eq!(permission(&p("*", None, &[Action::Pull]), None), "*:pull");
        assert_eq!(
            permission(&p("team", Some("a/b"), &pp), None),
            "team/a/b:pull,push"
        );
    }
}
