//! Golden tests of `mcp-hangar check-config`: each `golden/NAME.yaml` has its expected output and
//! exit status in `golden/NAME.out`. Run with `UPDATE_GOLDEN=1` to rewrite the expectations.

use std::path::Path;
use std::process::Command;

fn check(file: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-hangar"))
        .args(["check-config", file])
        .env_remove("MCP_HANGAR_CONFIG")
        .output()
        .expect("run mcp-hangar");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn golden_outputs() {
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir("tests/golden").expect("golden dir").flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let rel = format!("tests/golden/{}", path.file_name().and_then(|n| n.to_str()).expect("utf-8 name"));
        let (code, text) = check(&rel);
        let actual = format!("exit: {code}\n{text}");
        let expected_path = path.with_extension("out");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&expected_path, &actual).expect("write golden");
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1", expected_path.display()));
        assert_eq!(actual, expected, "check-config {rel}");
        checked += 1;
    }
    assert!(checked >= 6, "expected the golden files, found {checked}");
}

#[test]
fn unreadable_files_are_clear_errors() {
    let (code, text) = check("tests/golden/does-not-exist.yaml");
    assert_eq!(code, 2);
    assert_eq!(text, "tests/golden/does-not-exist.yaml: cannot read file: No such file or directory (os error 2)\n");
    let (code, text) = check("tests/golden");
    assert_eq!(code, 2);
    assert!(text.starts_with("tests/golden: cannot read file:"), "{text}");
    assert!(Path::new("tests/golden").is_dir());
}

#[test]
fn invalid_config_refuses_to_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-hangar"))
        .args(["--http", "--config", "tests/golden/wrong_types.yaml", "--log-format", "json"])
        .output()
        .expect("run mcp-hangar");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.port: expected an integer"), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout is reserved for the protocol");
}

#[test]
fn a_dry_run_says_what_a_change_would_do() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-hangar"))
        .args(["check-config", "tests/golden/diff/new.yaml", "--diff", "tests/golden/diff/old.yaml"])
        .env_remove("MCP_HANGAR_CONFIG")
        .output()
        .expect("run mcp-hangar");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = "tests/golden/diff/new.yaml: OK (6 providers: search_a (remote), search_b (remote), search_c (remote), search (group), math (subprocess), weather (remote))
changes from tests/golden/diff/old.yaml:
providers added: search_c, weather
providers removed: legacy
providers changed: search_b (description; applied in place), search (members; applied in place), math (command, tools; restarted)
groups rebalanced: search
tools added: math__subtract, weather__forecast
tools removed: math__sub
needs a restart: server.port
";
    assert_eq!(text, expected);
}
