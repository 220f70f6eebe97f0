//! Discovery sources: provider definitions from outside the configuration file, for the
//! reconciler to merge and validate with the file's. A source only produces definitions; it never
//! touches the routing table or the running providers.
//!
//! Today: `type: filesystem` (a directory of provider files in the Python MCP Hangar's format).
//! The other source types of the `discovery` section load (so the Python project's files keep
//! working) but are not read yet.

use std::path::PathBuf;

use hangar_config::{Config, DiscoveryMode, EnvLookup, LoadError, Problem, Provider, SourceKind};

/// A provider definition and the source that produced it.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The source's index in `discovery.sources`.
    pub source: usize,
    /// The source's mode (an additive source's providers stay when they disappear from it).
    pub mode: DiscoveryMode,
    /// The definition.
    pub provider: Provider,
}

/// Reads every filesystem source of `config` (when discovery is enabled). A file that cannot be
/// read, does not parse or is not a valid provider is an error naming the file; the errors of all
/// files are reported together, and a candidate with any of them is not applied.
pub fn read_filesystem_sources(config: &Config, env: EnvLookup<'_>) -> Result<Vec<Discovered>, LoadError> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    if !config.discovery.enabled {
        return Ok(found);
    }
    for (i, source) in config.discovery.sources.iter().enumerate() {
        let SourceKind::Filesystem { path, pattern, .. } = &source.kind else { continue };
        let files = match hangar_config::provider_files(path, pattern) {
            Ok(files) => files,
            Err(e) => {
                problems.push(Problem { path: format!("discovery.sources[{i}]"), message: e.to_string() });
                continue;
            }
        };
        let cap = config.discovery.security.max_providers_per_source;
        for file in files {
            match hangar_config::read_provider_file(&file, env) {
                Ok(Some(provider)) if found.iter().filter(|d: &&Discovered| d.source == i).count() >= cap => {
                    problems.push(Problem {
                        path: file.display().to_string(),
                        message: format!(
                            "provider {:?} is over the source's limit of {cap} (discovery.security.max_providers_per_source)",
                            provider.name
                        ),
                    });
                }
                Ok(Some(provider)) => found.push(Discovered { source: i, mode: source.mode, provider }),
                Ok(None) => {}
                Err(e) => problems.push(Problem { path: String::new(), message: e.to_string() }),
            }
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(LoadError::Invalid { source_name: "discovery sources".into(), problems })
    }
}

/// The directories of filesystem sources that ask to be watched.
pub fn watched_dirs(config: &Config) -> Vec<PathBuf> {
    if !config.discovery.enabled {
        return Vec::new();
    }
    config
        .discovery
        .sources
        .iter()
        .filter_map(|s| match &s.kind {
            SourceKind::Filesystem { path, watch: true, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// Source types the configuration names that are not read yet.
pub fn unsupported(config: &Config) -> Vec<&'static str> {
    if !config.discovery.enabled {
        return Vec::new();
    }
    let mut kinds: Vec<&'static str> =
        config.discovery.sources.iter().map(|s| s.kind.type_name()).filter(|t| *t != "filesystem").collect();
    kinds.dedup();
    kinds
}
