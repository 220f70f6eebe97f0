//! Unit tests of loading: defaults, expansion, and the problems reported for bad input.

use std::time::Duration;

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "WEATHER_TOKEN" => Some("tok-123".into()),
        "PORT" => Some("9100".into()),
        _ => None,
    }
}

fn problems(text: &str) -> Vec<String> {
    match parse(text, "t.yaml", &env) {
        Err(LoadError::Invalid { problems, .. }) => problems.iter().map(ToString::to_string).collect(),
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn empty_document_is_a_gateway_with_defaults() {
    let c = parse("", "t.yaml", &env).expect("empty config is valid");
    assert_eq!(c.server.host, "127.0.0.1");
    assert_eq!(c.server.port, 8000);
    assert_eq!(c.server.mcp_path, "/mcp");
    assert!(c.providers.is_empty());
    assert!(c.observability.metrics.enabled);
    assert!(!c.observability.tracing.enabled);
}

#[test]
fn issue_example_loads_with_defaults_and_secrets() {
    let text = r#"
server: {port: "${PORT}"}
providers:
  math:
    mode: subprocess
    command: [python, -m, my_math_server]
    env: {API_KEY: "${MATH_API_KEY:-none}", N: 3}
    tools: [{name: add, description: "Add", inputSchema: {type: object}}]
  sqlite:
    mode: docker
    image: ghcr.io/modelcontextprotocol/server-sqlite:latest
    volumes: ["/data/sqlite:/data:rw"]
  weather:
    mode: remote
    endpoint: https://weather.example/mcp
    headers: {Authorization: "Bearer ${WEATHER_TOKEN}"}
  search_a: {mode: remote, endpoint: "http://127.0.0.1:9001/mcp", expose: false}
  search_b: {mode: remote, endpoint: "http://127.0.0.1:9002/mcp", expose: false}
  search:
    mode: group
    strategy: weighted_round_robin
    members: [{provider: search_a, weight: 3, priority: 0}, {provider: search_b, weight: 1, priority: 1}]
observability:
  langfuse: {enabled: false, public_key: "${LANGFUSE_PUBLIC_KEY}", secret_key: "${LANGFUSE_SECRET_KEY}"}
"#;
    let c = parse(text, "t.yaml", &env).expect("valid");
    assert_eq!(c.server.port, 9100);
    let names: Vec<_> = c.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["math", "sqlite", "weather", "search_a", "search_b", "search"]);
    let math = c.provider("math").expect("math");
    assert_eq!(math.tool_prefix, "math__");
    assert_eq!(math.idle_ttl, Duration::from_secs(300));
    assert_eq!(math.health_check_interval, Duration::from_secs(60));
    assert_eq!(math.max_consecutive_failures, 3);
    assert_eq!(math.tools[0].name, "add");
    let ProviderKind::Subprocess(sp) = &math.kind else { panic!("subprocess") };
    assert_eq!(sp.env[0].1.expose(), "none");
    assert_eq!(sp.env[1].1.expose(), "3");
    let ProviderKind::Container(ct) = &c.provider("sqlite").expect("sqlite").kind else { panic!("container") };
    assert_eq!(ct.network, "none");
    assert!(ct.read_only);
    assert_eq!(ct.volumes[0], Volume { host: "/data/sqlite".into(), container: "/data".into(), read_only: false });
    let ProviderKind::Remote(r) = &c.provider("weather").expect("weather").kind else { panic!("remote") };
    assert_eq!(r.headers[0].1.expose(), "Bearer tok-123");
    assert!(!format!("{c:?}").contains("tok-123"), "secrets must not appear in Debug output");
    let ProviderKind::Group(g) = &c.provider("search").expect("search").kind else { panic!("group") };
    assert_eq!(g.members[0], Member { provider: "search_a".into(), weight: 3, priority: 0 });
}

#[test]
fn reports_every_problem_with_its_path() {
    let got = problems(
        r#"
server: {port: 70000, mcp_path: mcp, colour: red}
providers:
  math: {mode: subprocess, idle_ttl_s: -1, max_consecutive_failures: 0}
  search:
    mode: group
    warm: true
    members: [{provider: math, weight: 0}, {provider: search_c}]
"#,
    );
    assert_eq!(
        got,
        [
            "server.colour: unknown key (expected one of: host, port, mcp_path, allowed_origins, limits, allow_unauthenticated, tls, admin_tools, admin_api)",
            "server.port: must be between 1 and 65535, found 70000",
            "server.mcp_path: \"mcp\" must start with '/'",
            "providers.math.idle_ttl_s: must be a positive number of seconds up to one year, found -1",
            "providers.math.max_consecutive_failures: must be between 1 and 1000, found 0",
            "providers.math.command: is required for mode subprocess",
            "providers.search.members[0].weight: must be between 1 and 10000, found 0",
            "providers.search.warm: a group has nothing of its own to start; mark its members warm",
            "providers.search.members[1].provider: unknown provider \"search_c\"",
        ]
    );
}

#[test]
fn keys_of_another_mode_are_explained() {
    let got = problems("providers:\n  w: {mode: remote, endpoint: 'http://x', image: foo}\n");
    assert_eq!(got, ["providers.w.image: unknown key (not used by mode remote; used by: container)"]);
}

#[test]
fn missing_variable_names_variable_and_field() {
    let got = problems("providers:\n  w: {mode: remote, endpoint: 'http://x', headers: {X-Key: '${NOPE}'}}\n");
    assert_eq!(got, ["providers.w.headers.X-Key: environment variable \"NOPE\" is not set"]);
}

#[test]
fn enabled_langfuse_needs_its_keys() {
    let got = problems("observability:\n  langfuse: {enabled: true, public_key: '${NOPE}'}\n");
    assert_eq!(
        got,
        [
            "observability.langfuse.public_key: environment variable \"NOPE\" is not set",
            "observability.langfuse.secret_key: is required when langfuse is enabled",
        ]
    );
}

#[test]
fn duplicate_exposed_tool_names_and_prefixes() {
    let got = problems(
        r#"
providers:
  a: {mode: subprocess, command: [a], tool_prefix: "", tools: [{name: add}]}
  b: {mode: subprocess, command: [b], tool_prefix: "", tools: [{name: add}, {name: sub}, {name: sub}]}
  c: {mode: subprocess, command: [c], tool_prefix: "x_"}
  d: {mode: subprocess, command: [d], tool_prefix: "x_"}
"#,
    );
    assert_eq!(
        got,
        [
            "providers.b.tools[2].name: tool \"sub\" is declared twice",
            "providers.d.tool_prefix: \"x_\" is also the tool prefix of provider \"c\"; exposed names would collide",
            "providers.b.tools[0].name: exposed tool name \"add\" is also exposed by providers.a.tools[0]",
            "providers.b.tools[2].name: exposed tool name \"sub\" is also exposed by providers.b.tools[1]",
        ]
    );
}

#[test]
fn group_strategies_include_random() {
    let config = parse(
        "providers:\n  a: {mode: remote, endpoint: \"http://a\"}\n  g: {mode: group, strategy: random, members: [a]}\n",
        "t",
        &env,
    )
    .expect("valid");
    let Some(crate::ProviderKind::Group(g)) = config.provider("g").map(|p| &p.kind) else { panic!("a group") };
    assert_eq!(g.strategy.as_str(), "random");
    let got = problems(
        "providers:\n  a: {mode: remote, endpoint: \"http://a\"}\n  g: {mode: group, strategy: dice, members: [a]}\n",
    );
    assert!(got[0].contains("unknown strategy \"dice\"") && got[0].contains("random"), "{got:?}");
}

#[test]
fn group_references_are_checked() {
    let got = problems(
        r#"
providers:
  a: {mode: remote, endpoint: "http://a"}
  g1: {mode: group, members: [a, a, g1]}
  g2: {mode: group, strategy: consistent_hash, members: [g1]}
"#,
    );
    assert_eq!(
        got,
        [
            "providers.g2.hash_key: is required for strategy consistent_hash",
            "providers.g1.members[1].provider: \"a\" is already listed as members[0]",
            "providers.g1.members[2].provider: a group cannot contain itself",
            "providers.g2.members[0].provider: \"g1\" is a group; groups cannot be nested",
        ]
    );
}

#[test]
fn syntax_errors_carry_a_location() {
    let err = parse("providers:\n  a: [unclosed\n", "t.yaml", &env).expect_err("invalid");
    let LoadError::Syntax { line, .. } = &err else { panic!("syntax error expected, got {err:?}") };
    assert!(*line >= 2, "line {line}");
    assert!(err.to_string().starts_with("t.yaml:"), "{err}");
}

#[test]
fn wrong_types_are_named() {
    let got = problems("server: [1]\nproviders: {a: {mode: 3}}\nobservability: {metrics: {enabled: maybe}}\n");
    assert_eq!(
        got,
        [
            "server: expected a mapping, found a list",
            "providers.a.mode: expected a string, found number 3",
            "observability.metrics.enabled: expected true or false, found string \"maybe\"",
        ]
    );
}

#[test]
fn embedded_default_is_valid() {
    let c = parse(EMBEDDED_DEFAULT, EMBEDDED_DEFAULT_NAME, &|name| {
        (name == "MCP_HANGAR_EXE").then(|| "/usr/bin/mcp-hangar".to_owned())
    })
    .expect("embedded default must load");
    assert_eq!(c.server.port, 8000);
}

#[test]
fn yaml_merge_keys_work() {
    let text = r#"
x-defaults: &d {mode: remote, idle_ttl_s: 10}
providers:
  a: {<<: *d, endpoint: "http://a"}
"#;
    // `x-defaults` is not a known top-level key: anchors must live under a known key.
    assert_eq!(
        problems(text),
        ["x-defaults: unknown key (expected one of: server, providers, observability, config_reload, discovery, auth, rate_limits, virtual_servers)"]
    );
    let text =
        "providers:\n  a: &d {mode: remote, endpoint: 'http://a', idle_ttl_s: 10}\n  b: {<<: *d, tool_prefix: bb_}\n";
    let c = parse(text, "t.yaml", &env).expect("valid");
    assert_eq!(c.provider("b").expect("b").idle_ttl, Duration::from_secs(10));
}

#[test]
fn shipped_examples_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    // The examples, and the configurations of the container image and the compose stack.
    for dir in [root.join("examples"), root.join("../deploy/docker")] {
        for entry in std::fs::read_dir(&dir).expect("examples dir").flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                // python-hangar.yaml passes a credential from the environment, as its users do.
                let env = |name: &str| match name {
                    "MCP_HANGAR_EXE" => Some("/bin/true".to_owned()),
                    "GITHUB_TOKEN" => Some("token".to_owned()),
                    _ => None,
                };
                load_file(&path, &env).unwrap_or_else(|e| panic!("{e}"));
                count += 1;
            }
        }
    }
    assert!(count >= 5, "found {count} examples");
}

#[test]
fn circuit_breakers_and_health_checks_are_checked() {
    let got = problems(
        r#"
providers:
  a:
    mode: remote
    endpoint: "http://a"
    health_check_timeout_s: -1
    circuit_breaker: {open_s: 5, half_open_probes: 0, error_rate: 1.5, min_calls: 10, window: 3}
  b: {mode: remote, endpoint: "http://b", circuit_breaker: {error_rate: "half"}}
"#,
    );
    assert_eq!(
        got,
        [
            "providers.a.health_check_timeout_s: must be a positive number of seconds up to one year, found -1",
            "providers.a.circuit_breaker.window: unknown key (expected one of: open_s, half_open_probes, error_rate, min_calls)",
            "providers.a.circuit_breaker.half_open_probes: must be between 1 and 100, found 0",
            "providers.a.circuit_breaker.error_rate: expected a share in (0, 1], found number 1.5",
            "providers.b.circuit_breaker.error_rate: expected a share in (0, 1], found string \"half\"",
        ]
    );
    let ok = parse(
        "providers:\n  a: {mode: remote, endpoint: \"http://a\", circuit_breaker: {open_s: 2, error_rate: 0.25}}\n",
        "t.yaml",
        &env,
    )
    .expect("valid");
    let breaker = ok.provider("a").expect("a").circuit_breaker;
    assert_eq!(breaker.open, Duration::from_secs(2));
    assert!((breaker.error_rate - 0.25).abs() < f64::EPSILON);
    assert_eq!(breaker.half_open_probes, 1, "defaults fill the rest");
}

#[test]
fn observability_is_checked_and_reads_the_otel_environment() {
    let got = problems(
        r#"
observability:
  tracing: {enabled: true, protocol: carrier-pigeon, exporter: x}
  audit: {path: "", max_bytes: 10, fsync: sometimes, keep: -1}
  access_log: loud
"#,
    );
    assert_eq!(
        got,
        [
            "observability.tracing.exporter: unknown key (expected one of: enabled, otlp_endpoint, protocol, service_name)",
            "observability.tracing.protocol: unknown protocol \"carrier-pigeon\" (one of: grpc, http/protobuf)",
            "observability.audit.path: must not be empty",
            "observability.audit.max_bytes: must be between 4096 and 1099511627776, found 10",
            "observability.audit.keep: expected an integer between 0 and 1000, found number -1",
            "observability.audit.fsync: unknown policy \"sometimes\" (one of: always, interval, never)",
            "observability.access_log: expected true or false, found string \"loud\"",
        ]
    );
    let env = |k: &str| match k {
        "MCP_TRACING_ENABLED" => Some("true".to_owned()),
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4317".to_owned()),
        _ => None,
    };
    let c =
        parse("observability: {audit: {path: /var/log/hangar.jsonl, fsync: always}}", "t.yaml", &env).expect("valid");
    assert!(c.observability.tracing.enabled, "MCP_TRACING_ENABLED switches tracing on");
    assert_eq!(c.observability.tracing.otlp_endpoint, "http://collector:4317");
    assert!(c.observability.audit.enabled, "an audit section enables the audit log");
    assert_eq!(c.observability.audit.fsync, Fsync::Always);
    let c = parse("observability: {tracing: {otlp_endpoint: 'http://mine:4317'}}", "t.yaml", &env).expect("valid");
    assert_eq!(c.observability.tracing.otlp_endpoint, "http://mine:4317", "the file wins over the environment");
    let off = |k: &str| (k == "MCP_TRACING_ENABLED").then(|| "maybe".to_owned());
    let err = parse("", "t.yaml", &off).expect_err("bad switch");
    assert!(err.to_string().contains("$MCP_TRACING_ENABLED: expected true or false"), "{err}");
}

#[test]
fn urls_are_shown_without_credentials_or_query_values() {
    assert_eq!(crate::redact_url("http://h:1/mcp"), "http://h:1/mcp");
    assert_eq!(
        crate::redact_url("https://user:pw@h/mcp?token=abc&x=1&flag#frag"),
        "https://***@h/mcp?token=***&x=***&flag"
    );
    assert_eq!(crate::redact_url("not a url"), "***");
}

#[test]
fn endpoints_with_credentials_are_refused_without_echoing_them() {
    let text = "providers:\n  r:\n    mode: remote\n    endpoint: https://bob:s3cret@example.com/mcp?key=k3y\n";
    let err = crate::parse(text, "t.yaml", &|_| None).expect_err("credentials in the URL");
    let shown = err.to_string();
    assert!(shown.contains("providers.r.endpoint") && shown.contains("put them in the provider's headers"), "{shown}");
    assert!(!shown.contains("s3cret") && !shown.contains("k3y") && !shown.contains("bob"), "{shown}");
}

#[test]
fn header_values_with_control_characters_are_refused() {
    let text = "providers:\n  r:\n    mode: remote\n    endpoint: http://h/mcp\n    headers: {X-Key: \"a\\u007fb\"}\n";
    let err = crate::parse(text, "t.yaml", &|_| None).expect_err("DEL in a header value");
    assert!(err.to_string().contains("providers.r.headers.X-Key"), "{err}");
}

#[test]
fn rate_limits_and_exposure() {
    let text = "rate_limits:\n  per_principal: {rps: 2}\n  per_provider: {rps: 0, burst: 3}\nproviders:\n  a:\n    mode: remote\n    endpoint: http://127.0.0.1:9/mcp\n    tools_include: [\"get_*\", \"docs://*\"]\n    tools_exclude: [get_secret]\n    rate_limit: {rps: 1.5, burst: 4, brust: 1}\n";
    let err = crate::parse(text, "t", &|_| None).expect_err("invalid");
    let shown = err.to_string();
    assert!(shown.contains("rate_limits.per_provider.rps: must be a positive number"), "{shown}");
    assert!(shown.contains("providers.a.rate_limit.brust: unknown key (did you mean \"burst\"?)"), "{shown}");
    let ok = text.replace("rps: 0, ", "rps: 1, ").replace(", brust: 1", "");
    let config = crate::parse(&ok, "t", &|_| None).expect("valid");
    assert_eq!(
        config.rate_limits.per_principal,
        Some(crate::Rate { rps: 2.0, burst: 4 }),
        "burst defaults to twice rps"
    );
    let a = config.provider("a").expect("a");
    assert_eq!(a.rate_limit, Some(crate::Rate { rps: 1.5, burst: 4 }));
    assert!(a.exposes("get_weather") && a.exposes("docs://x/y"));
    assert!(!a.exposes("get_secret") && !a.exposes("delete_all"));
    let from_env = crate::parse("providers: {}\n", "t", &|v| match v {
        "MCP_RATE_LIMIT_RPS" => Some("3".into()),
        "MCP_RATE_LIMIT_BURST" => Some("7".into()),
        _ => None,
    })
    .expect("valid");
    assert_eq!(from_env.rate_limits.per_principal, Some(crate::Rate { rps: 3.0, burst: 7 }), "the Python variables");
}

#[test]
fn tls_options_of_remote_providers() {
    let text = "providers:\n  a:\n    mode: remote\n    endpoint: https://x.example/mcp\n    ca_file: /nonexistent/ca.pem\n  b:\n    mode: remote\n    endpoint: https://x.example/mcp\n    ca_file: Cargo.toml\n    insecure_skip_verify: true\n";
    let shown = crate::parse(text, "t", &|_| None).expect_err("invalid").to_string();
    assert!(shown.contains("providers.a.ca_file: /nonexistent/ca.pem is not a readable file"), "{shown}");
    assert!(shown.contains("providers.b.insecure_skip_verify: ca_file is pointless"), "{shown}");
    let front = "server:\n  tls: {cert_file: /nonexistent/cert.pem}\n";
    let shown = crate::parse(front, "t", &|_| None).expect_err("invalid").to_string();
    assert!(shown.contains("server.tls.cert_file: /nonexistent/cert.pem is not a readable file"), "{shown}");
    assert!(shown.contains("server.tls.key_file: is required (PEM private key)"), "{shown}");
}

#[test]
fn virtual_servers() {
    let text = "providers:\n  a: {mode: remote, endpoint: \"http://127.0.0.1:9/mcp\"}\nvirtual_servers:\n  team-a: {providers: [a, hangar], tools_exclude: [\"a__drop*\"]}\n  \"bad/name\": {providers: [a]}\n  b: {providers: [nope]}\n  c: {}\n";
    let shown = crate::parse(text, "t", &|_| None).expect_err("invalid").to_string();
    assert!(shown.contains("virtual_servers[\"bad/name\"]: a virtual server's name is a path segment"), "{shown}");
    assert!(shown.contains("virtual_servers.b.providers[0]: unknown provider \"nope\""), "{shown}");
    assert!(shown.contains("virtual_servers.c.providers: is required"), "{shown}");
    let ok = "providers:\n  a: {mode: remote, endpoint: \"http://127.0.0.1:9/mcp\"}\nvirtual_servers:\n  team-a: {providers: [a, hangar], tools_exclude: [\"a__drop*\"]}\n";
    let config = crate::parse(ok, "t", &|_| None).expect("valid");
    let v = &config.virtual_servers[0];
    assert!(v.offers("a", "a__echo") && v.offers("hangar", "registry_list"));
    assert!(!v.offers("a", "a__drop_table") && !v.offers("other", "other__echo"));
}

#[test]
fn later_python_hangar_keys_say_what_to_do_instead() {
    let text = "mcp_servers:\n  a: {mode: remote, endpoint: \"http://a\"}\nlogging: {level: INFO}\n";
    assert_eq!(
        problems(text),
        [
            "mcp_servers: unknown key (the Python MCP Hangar's later name for \"providers\": rename it)",
            "logging: unknown key (logging is set on the command line: --log-level and --log-format json)",
        ]
    );
}
