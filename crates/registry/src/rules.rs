//! Each project's immutability rules, read from the metadata store and
//! remembered for a moment.
//!
//! Pushes and deletes consult the rules on every request, so they are cached
//! per project for [`RULES_TTL`]: a rule added on another node takes effect
//! here within that time (on this node at once, as the change invalidates
//! the entry).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use policy::immutability::ImmutabilityRules;

use crate::{Registry, RegistryError, Result};

/// How long a project's rules are remembered.
pub const RULES_TTL: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub(crate) struct RulesCache {
    entries: Mutex<HashMap<String, (Instant, Arc<ImmutabilityRules>)>>,
}

impl RulesCache {
    pub(crate) fn forget(&self, project: &str) {
        self.entries.lock().expect("rules cache").remove(project);
    }
}

/// Parses stored immutability rules; what the store holds was validated
/// when it was set, so a failure means the row is corrupt.
pub fn parse_immutability(json: &str) -> Result<ImmutabilityRules> {
    serde_json::from_str(json).map_err(|e| {
        RegistryError::Internal(format!("stored immutability rules do not parse: {e}").into())
    })
}

impl Registry {
    /// The immutability rules of `project` (none for an unknown project).
    pub(crate) async fn immutability(&self, project: &str) -> Result<Arc<ImmutabilityRules>> {
        if let Some((at, rules)) = self.rules.entries.lock().expect("rules cache").get(project)
            && at.elapsed() < RULES_TTL
        {
            return Ok(rules.clone());
        }
        let rules = match self.meta.project_settings(project).await? {
            Some(settings) => Arc::new(parse_immutability(&settings.immutability)?),
            None => Arc::new(ImmutabilityRules::default()),
        };
        self.rules
            .entries
            .lock()
            .expect("rules cache")
            .insert(project.to_owned(), (Instant::now(), rules.clone()));
        Ok(rules)
    }
}
