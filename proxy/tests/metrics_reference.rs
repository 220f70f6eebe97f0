//! `docs/metrics.md` lists exactly the series the gateway registers: its table is generated from
//! the registry. Run with `UPDATE_GOLDEN=1` to rewrite the table after adding a series.

use mcp_hangar::telemetry::metrics::Metrics;

const BEGIN: &str = "<!-- series: generated from the registry by proxy/tests/metrics_reference.rs -->\n";
const END: &str = "<!-- end of series -->";

#[test]
fn the_metrics_reference_lists_every_registered_series() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    let doc = std::fs::read_to_string(&path).expect("docs/metrics.md");
    let start = doc.find(BEGIN).expect("the generated table's start marker") + BEGIN.len();
    let end = doc[start..].find(END).expect("the generated table's end marker") + start;
    let table = Metrics::new().reference();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, format!("{}{table}{}", &doc[..start], &doc[end..])).expect("write docs/metrics.md");
        return;
    }
    assert_eq!(doc[start..end], table, "docs/metrics.md is stale; run with UPDATE_GOLDEN=1");
    assert!(table.contains("`mcp_hangar_tool_calls_total` | counter | `provider`, `tool`, `outcome`"), "{table}");
}
