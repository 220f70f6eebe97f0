//! Log set-up. Logs go to stderr: in stdio mode stdout carries the MCP protocol and nothing else.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `--log-level` is not a level or a valid directive list.
    #[error("invalid --log-level {level:?}: {reason}")]
    Filter {
        /// What was given.
        level: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("logging already initialised")]
    AlreadySet,
}

/// Installs the global subscriber. `level` is a level name or a `tracing` directive list such as
/// `info,mcp_hangar::upstream=debug`.
pub fn init(level: &str, format: LogFormat) -> Result<(), LoggingError> {
    let filter = EnvFilter::builder()
        .parse(level)
        .map_err(|e| LoggingError::Filter { level: level.to_owned(), reason: e.to_string() })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|_| LoggingError::AlreadySet)
}
