// Listings with filters, sorting and pages, shared by the management
// queries. Included by each SQL backend (see `sql/mod.rs`).

use super::{Pool, Row};
use crate::identity::{Listed, Page, Sort};
use crate::sql::Value;
use crate::{MetadataError, Result};

/// Binds `values` in order to a query of any kind.
macro_rules! bind_values {
    ($query:expr, $values:expr) => {{
        let mut query = $query;
        for value in $values {
            query = match value {
                Value::Null => query.bind(None::<i64>),
                Value::Int(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
                Value::Bytes(v) => query.bind(v),
            };
        }
        query
    }};
}
pub(super) use bind_values;

/// The conditions of a listing, with their parameters numbered in order.
#[derive(Default)]
pub(super) struct Conditions {
    pub(super) clauses: Vec<String>,
    pub(super) values: Vec<Value>,
}

impl Conditions {
    /// Adds a condition whose `?` marks (in order) take `values`.
    pub(super) fn add(&mut self, clause: &str, values: impl IntoIterator<Item = Value>) {
        let mut sql = String::new();
        let mut values = values.into_iter();
        for (i, piece) in clause.split('?').enumerate() {
            if i > 0 {
                self.values.push(values.next().expect("a value for each ?"));
                sql.push_str(&format!("${}", self.values.len()));
            }
            sql.push_str(piece);
        }
        self.clauses.push(sql);
    }

    /// `column` contains `needle`, ignoring case.
    pub(super) fn contains(&mut self, column: &str, needle: &str) {
        self.add(
            &format!("LOWER({column}) LIKE ? ESCAPE '\\'"),
            [Value::Text(format!("%{}%", like_escaped(&needle.to_lowercase())))],
        );
    }

    pub(super) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// `LIMIT $n OFFSET $m` after the conditions' parameters.
    pub(super) fn page(&self, page: Page) -> (String, Vec<Value>) {
        let n = self.values.len();
        let mut values = self.values.clone();
        values.push(Value::Int(i64::from(page.limit)));
        values.push(Value::Int(page.offset.min(i64::MAX as u64) as i64));
        (format!(" LIMIT ${} OFFSET ${}", n + 1, n + 2), values)
    }
}

/// `ORDER BY` for `sort` among the listing's sortable `(field, expression)`
/// pairs; `tie` keeps pages stable among equal values.
pub(super) fn order_by(sort: &Sort, sortable: &[(&str, &str)], natural: &str, tie: &str) -> Result<String> {
    let Some(field) = sort.field.as_deref() else {
        return Ok(format!(" ORDER BY {natural}, {tie}"));
    };
    let (_, expression) = sortable
        .iter()
        .find(|(name, _)| *name == field)
        .ok_or_else(|| {
            let names: Vec<&str> = sortable.iter().map(|(n, _)| *n).collect();
            MetadataError::Invalid(format!(
                "cannot sort by {field:?}; sortable fields are {}",
                names.join(", ")
            ))
        })?;
    let direction = if sort.descending { "DESC" } else { "ASC" };
    Ok(format!(" ORDER BY {expression} {direction}, {tie}"))
}

/// `s` with the `LIKE` wildcards escaped (by `\\`).
pub(super) fn like_escaped(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Marks a statement assembled at run time as reviewed for injection: every
/// one here is made of this file's constant SQL and column names from fixed
/// lists; values are always bound as parameters, never spliced in.
pub(super) fn audited(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// Runs a listing: the page of rows and the total count.
pub(super) async fn list<T>(
    pool: &Pool,
    select: &str,
    count: &str,
    conditions: &Conditions,
    order: &str,
    page: Page,
    from_row: fn(&Row) -> Result<T>,
) -> Result<Listed<T>> {
    let (limit, values) = conditions.page(page);
    let sql = format!("{select}{}{order}{limit}", conditions.sql());
    let rows = bind_values!(sqlx::query(audited(sql)), values)
        .fetch_all(pool)
        .await?;
    let count_sql = format!("{count}{}", conditions.sql());
    let total: i64 = bind_values!(sqlx::query_scalar(audited(count_sql)), conditions.values.clone())
        .fetch_one(pool)
        .await?;
    Ok(Listed {
        items: rows.iter().map(from_row).collect::<Result<_>>()?,
        total: total as u64,
    })
}

