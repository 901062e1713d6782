//! Query strings, including repeated parameters (`?tag=a&tag=b`).

use crate::error::ApiError;

#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        Query(
            query
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `n` for listings: a non-negative integer, or absent.
    pub fn page_size(&self) -> Result<Option<u32>, ApiError> {
        match self.get("n") {
            None => Ok(None),
            Some(n) => n.parse::<u32>().map(Some).map_err(|_| {
                ApiError::bad_parameter(format!(
                    "query parameter n must be a non-negative integer, not {n:?}"
                ))
            }),
        }
    }
}

/// Builds a query string, escaping values.
pub fn encode(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}
