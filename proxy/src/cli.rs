//! Command line: `mcp-hangar [--config FILE] [--http] …`, `check-config FILE`, `demo-server`,
//! `hash-key`, `crds`, `import`, `probe`.
//!
//! Flags and names follow the Python MCP Hangar so its users keep their commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use hangar_config::{Config, LoadError, EMBEDDED_DEFAULT, EMBEDDED_DEFAULT_NAME};

use crate::state::reconcile::{ConfigSource, Desired, Start};
use crate::telemetry::logging::{self, LogFormat};

/// Exit status of `check-config` for an invalid file (and of start-up with one).
const EXIT_INVALID_CONFIG: u8 = 2;

/// MCP Hangar: one MCP server in front of many.
#[derive(Debug, Parser)]
#[command(name = "mcp-hangar", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (YAML). Without it, the embedded default configuration is used.
    #[arg(long, short = 'c', env = "MCP_HANGAR_CONFIG")]
    config: Option<PathBuf>,
    /// Serve streamable HTTP instead of stdio.
    #[arg(long)]
    http: bool,
    /// Address to listen on in HTTP mode (overrides `server.host`).
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on in HTTP mode (overrides `server.port`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Log filter: a level (`info`, `debug`, …) or a `tracing` directive list.
    #[arg(long, default_value = "info", env = "MCP_HANGAR_LOG_LEVEL")]
    log_level: String,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration file: print every problem, exit 2 when invalid, 0 when valid.
    /// With `--diff OLD`, also print what changing from OLD to it would do.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
        /// The running configuration to compare with (a dry run of the reload).
        #[arg(long, value_name = "OLD")]
        diff: Option<PathBuf>,
    },
    /// Run the built-in demo MCP server on stdio (the embedded default config's provider).
    DemoServer,
    /// Print the `key_hash` of an API key read from standard input (for `auth.api_key.keys`);
    /// with `--generate`, make a new random key and print it and its hash.
    HashKey {
        /// Generate a new key instead of reading one.
        #[arg(long)]
        generate: bool,
    },
    /// Print the CustomResourceDefinitions of `MCPProvider` and `MCPProviderGroup` (what
    /// `deploy/crds/mcp-hangar.io.yaml` holds), for `kubectl apply -f -`.
    Crds,
    /// Read a desktop client's server list (the `mcpServers` JSON of Claude Desktop, Cursor and
    /// LM Studio, or VS Code's `servers`) and print the equivalent gateway providers; credentials
    /// become `${VAR}` references, and the variables to set are listed. Exit 2 when an entry could
    /// not be converted.
    Import {
        /// The client's JSON file.
        file: PathBuf,
        /// Add the providers to this configuration file (created when missing) instead of
        /// printing them; its comments and layout are kept.
        #[arg(long, value_name = "CONFIG")]
        into: Option<PathBuf>,
    },
    /// GET an http:// URL and exit 0 when the answer is 2xx, 1 otherwise (the container image's
    /// health check: it has no shell or curl).
    Probe {
        /// For example `http://127.0.0.1:8000/health/live`.
        url: String,
        /// Seconds for the whole exchange.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

/// Parses the command line, runs the chosen command and returns its exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file, diff }) => check_config(&file, diff.as_deref()),
        Some(Command::DemoServer) => crate::demo::run(),
        Some(Command::HashKey { generate }) => hash_key(generate),
        Some(Command::Crds) => crds(),
        Some(Command::Import { file, into }) => import(&file, into.as_deref()),
        Some(Command::Probe { url, timeout }) => probe(&url, timeout),
        None => serve(cli),
    }
}

/// `crds`: the manifests rendered from the resource types, so they never drift from what the
/// gateway reads.
fn crds() -> ExitCode {
    match crate::discovery::kubernetes::resources::crd_manifests() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcp-hangar crds: cannot render the manifests: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `probe`: silent on success (a health check runs every few seconds), the reason on failure.
fn probe(url: &str, timeout_secs: u64) -> ExitCode {
    match crate::probe::probe(url, std::time::Duration::from_secs(timeout_secs.max(1))) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-hangar probe: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Largest client file `import` reads.
const MAX_IMPORT_BYTES: u64 = 4 << 20;

/// `import`: the providers to stdout (or merged into `into`), what was noted and what could not be
/// converted to stderr.
fn import(file: &Path, into: Option<&Path>) -> ExitCode {
    use hangar_config::import::{import_client_config, render};
    let text = match read_bounded(file, MAX_IMPORT_BYTES) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mcp-hangar import: {}: {e}", file.display());
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    let source = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
    let imported = import_client_config(&text);
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    for problem in &imported.problems {
        eprintln!("problem: {problem}");
    }
    if !imported.problems.is_empty() && into.is_some() {
        eprintln!("mcp-hangar import: nothing written: {} entries could not be converted", imported.problems.len());
        return ExitCode::from(EXIT_INVALID_CONFIG);
    }
    let written = match into {
        None => {
            print!("{}", render(&imported, &source));
            None
        }
        Some(config) => match merged_config(config, &imported, &source) {
            Ok(()) => Some(config),
            Err(problems) => {
                for p in problems {
                    eprintln!("mcp-hangar import: {}: {p}", config.display());
                }
                eprintln!("mcp-hangar import: nothing written");
                return ExitCode::from(EXIT_INVALID_CONFIG);
            }
        },
    };
    if let Some(config) = written {
        eprintln!("added {} providers to {}", imported.providers.len(), config.display());
    }
    let secrets: Vec<&str> = imported.variables.iter().filter(|v| v.had_value).map(|v| v.name.as_str()).collect();
    if !imported.variables.is_empty() {
        eprintln!(
            "set before starting the gateway: {}{}",
            imported.variables.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", "),
            if secrets.is_empty() {
                String::new()
            } else {
                format!(" ({} held credentials in {source}, which were not copied)", secrets.join(", "))
            }
        );
    }
    if imported.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID_CONFIG)
    }
}

/// Merges `imported` into the configuration file `config` (made when missing), checks that the
/// result loads (the imported variables stand in for their values), and replaces the file
/// atomically.
fn merged_config(config: &Path, imported: &hangar_config::import::Imported, source: &str) -> Result<(), Vec<String>> {
    let existing = match read_bounded(config, 16 << 20) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(vec![e.to_string()]),
    };
    let merged = hangar_config::import::merge_into(&existing, imported, source)?;
    let stand_in = |name: &str| {
        if imported.variables.iter().any(|v| v.name == name) {
            Some("imported".to_owned())
        } else {
            env_var(name)
        }
    };
    if let Err(e) = hangar_config::parse(&merged, &config.display().to_string(), &stand_in) {
        return Err(vec![format!("the merged configuration would not load: {e}")]);
    }
    let dir = config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.import-{}",
        config.file_name().map_or("config".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    std::fs::write(&tmp, merged).and_then(|()| std::fs::rename(&tmp, config)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        vec![format!("cannot write it: {e}")]
    })
}

/// A text file of at most `limit` bytes.
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    let size = std::fs::metadata(path)?.len();
    if size > limit {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {limit} bytes")));
    }
    std::fs::read_to_string(path)
}

/// `hash-key`: the key comes from standard input, never the command line (which other users of
/// the machine and the shell history see).
fn hash_key(generate: bool) -> ExitCode {
    use crate::auth::keys;
    if generate {
        let key = keys::generate();
        println!("key:      {key}\nkey_hash: {}", keys::key_hash(&key));
        return ExitCode::SUCCESS;
    }
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(_) if !line.trim().is_empty() => {
            println!("{}", keys::key_hash(line.trim()));
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("mcp-hangar hash-key: give the key on standard input (or use --generate)");
            ExitCode::from(EXIT_INVALID_CONFIG)
        }
        Err(e) => {
            eprintln!("mcp-hangar hash-key: cannot read standard input: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &Path, old: Option<&Path>) -> ExitCode {
    let load = |file: &Path| {
        Start::load(Box::new(FileSource { file: Some(file.to_owned()), host: None, port: None, http: true }))
    };
    match load(file) {
        Ok(start) => {
            println!("{}: OK ({})", file.display(), summary(start.config()));
            let Some(old) = old else { return ExitCode::SUCCESS };
            match load(old) {
                Ok(old_start) => {
                    let (old_config, mut new_config) = (old_start.config(), start.config().clone());
                    let plan = crate::state::reconcile::plan(old_config, &mut new_config);
                    let d = crate::state::diff::describe(old_config, &new_config, &plan, None);
                    println!("changes from {}:\n{}", old.display(), crate::state::diff::to_text(&d));
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    println!("{err}");
                    ExitCode::from(EXIT_INVALID_CONFIG)
                }
            }
        }
        Err(err) => {
            println!("{err}");
            ExitCode::from(EXIT_INVALID_CONFIG)
        }
    }
}

fn serve(cli: Cli) -> ExitCode {
    let format = match cli.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    if let Err(e) = logging::init(&cli.log_level, format) {
        eprintln!("mcp-hangar: {e}");
        return ExitCode::from(EXIT_INVALID_CONFIG);
    }
    let source = FileSource { file: cli.config.clone(), host: cli.host.clone(), port: cli.port, http: cli.http };
    let start = match Start::load(Box::new(source)) {
        Ok(s) => s,
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    let config = start.config();
    if cli.http && !hangar_config::is_loopback_host(&config.server.host) && !config.auth.enabled {
        tracing::warn!(host = %config.server.host, "serving without authentication on a non-loopback address (server.allow_unauthenticated)");
    }
    tracing::info!(
        source = cli.config.as_deref().map_or(EMBEDDED_DEFAULT_NAME.to_owned(), |p| p.display().to_string()),
        "configuration loaded: {}",
        summary(start.config())
    );
    let result = if cli.http { crate::runtime::run_http(start) } else { crate::runtime::run_stdio(start) };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// An environment variable, or for `MCP_HANGAR_EXE` this binary's path (so the default config can
/// start the built-in demo server without anything installed).
fn env_var(name: &str) -> Option<String> {
    hangar_config::process_env(name).or_else(|| {
        (name == "MCP_HANGAR_EXE").then(|| std::env::current_exe().ok().map(|p| p.display().to_string())).flatten()
    })
}

/// Loads `file`, or the embedded default (the file alone, without discovery sources).
pub fn load(file: Option<&Path>) -> Result<Config, LoadError> {
    match file {
        Some(path) => hangar_config::load_file(path, &env_var),
        None => hangar_config::parse(EMBEDDED_DEFAULT, EMBEDDED_DEFAULT_NAME, &env_var),
    }
}

/// The configuration as the command line names it: a file (or the embedded default), the
/// provider files of its discovery sources, and the `--host`/`--port` overrides. Read again on
/// each reload.
struct FileSource {
    file: Option<PathBuf>,
    host: Option<String>,
    port: Option<u16>,
    /// Served over HTTP: a non-loopback address then needs authentication.
    http: bool,
}

impl FileSource {
    /// `config` (read from the file or given as a candidate) with the command line's overrides,
    /// checked for exposure, and the providers of its provider directories.
    fn desired(&self, mut config: Config) -> Result<Desired, LoadError> {
        if let Some(host) = &self.host {
            config.server.host.clone_from(host);
        }
        if let Some(port) = self.port {
            config.server.port = port;
        }
        if let Some(problem) = hangar_config::exposure_problem(&config).filter(|_| self.http) {
            let source_name =
                self.file.as_deref().map_or(EMBEDDED_DEFAULT_NAME.to_owned(), |p| p.display().to_string());
            return Err(LoadError::Invalid { source_name, problems: vec![problem] });
        }
        let discovered = crate::discovery::read_filesystem_sources(&config, &env_var)?;
        Ok(Desired { config, discovered })
    }
}

impl ConfigSource for FileSource {
    fn load(&self) -> Result<Desired, LoadError> {
        self.desired(load(self.file.as_deref())?)
    }

    fn load_text(&self, text: &str) -> Result<Desired, LoadError> {
        self.desired(hangar_config::parse(text, crate::state::reconcile::CANDIDATE_NAME, &env_var)?)
    }

    fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

fn summary(config: &Config) -> String {
    let names: Vec<String> = config.providers.iter().map(|p| format!("{} ({})", p.name, p.kind.mode())).collect();
    match names.len() {
        0 => "no providers".to_owned(),
        n => format!("{n} provider{}: {}", if n == 1 { "" } else { "s" }, names.join(", ")),
    }
}
