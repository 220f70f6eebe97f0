//! The audit writer against a real file: ordering and completeness under concurrent writers,
//! rotation, redaction, queries.

use std::sync::Arc;

use super::*;

fn settings(dir: &Path, max_bytes: u64) -> hangar_config::Audit {
    hangar_config::Audit {
        enabled: true,
        path: dir.join("audit.jsonl"),
        max_bytes,
        keep: 2,
        fsync: Fsync::Always,
        arguments: true,
        ..hangar_config::Audit::default()
    }
}

fn call(n: usize) -> ToolCall {
    ToolCall {
        caller: format!("client:c{}", n % 4),
        principal: "anonymous".into(),
        era: "modern",
        provider: "p".into(),
        tool: "p__t".into(),
        outcome: "ok",
        duration_ms: 1.5,
        error: None,
        arguments: Some(
            json!({"n": n.to_string(), "nested": {"apiKey": "s3cret", "Password": "x"}, "text": "token-free"}),
        ),
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is one whole JSON object"))
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hangar-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn concurrent_writers_never_interleave_and_nothing_is_lost_on_close() {
    let dir = temp_dir("concurrent");
    let audit = Arc::new(Audit::open(&settings(&dir, 1 << 30), Arc::default()).expect("open"));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let audit = audit.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    audit.tool_call(call(t * 1000 + i));
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().expect("writer thread"));
    audit.close();
    let records = lines(&dir.join("audit.jsonl"));
    assert_eq!(records.len(), 4000);
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..=4000).collect::<Vec<_>>(), "numbered in file order");
    let r = &records[0];
    assert_eq!(r["type"], "tool_call");
    assert_eq!(r["arguments"]["nested"]["apiKey"], "[REDACTED]");
    assert_eq!(r["arguments"]["nested"]["Password"], "[REDACTED]");
    assert_eq!(r["arguments"]["text"], "token-free", "values are not inspected, keys are");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rotates_by_size_keeps_the_configured_files_and_queries_across_them() {
    let dir = temp_dir("rotate");
    let audit = Audit::open(&settings(&dir, 4096), Arc::default()).expect("open");
    for i in 0..200 {
        audit.tool_call(call(i));
    }
    audit.flush();
    let current = dir.join("audit.jsonl");
    assert!(rotated(&current, 1).exists() && rotated(&current, 2).exists());
    assert!(!rotated(&current, 3).exists(), "keep: 2");
    for p in [current.clone(), rotated(&current, 1)] {
        let size = std::fs::metadata(&p).expect("file").len();
        assert!(size <= 4096, "{} is {size} bytes", p.display());
    }
    let all = audit.query(&Filter { limit: 1000, ..Filter::default() }).expect("query");
    assert!(!all.truncated);
    let seqs: Vec<u64> = all.records.iter().map(|r| r["seq"].as_u64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "oldest file first, in order");
    assert_eq!(seqs.last(), Some(&200));
    let c1 = audit
        .query(&Filter { caller: Some("client:c1".into()), limit: 5, ..Filter::default() })
        .expect("query")
        .records;
    assert_eq!(c1.len(), 5);
    assert!(c1.iter().all(|r| r["caller"] == "client:c1"));
    assert_eq!(c1.last().map(|r| r["arguments"]["n"].clone()), Some(json!("197")), "the latest ones");
    audit.close();
    // Numbering goes on after a restart.
    let again = Audit::open(&settings(&dir, 4096), Arc::default()).expect("reopen");
    again.config_applied(1, 3, Value::Null);
    again.close();
    assert_eq!(lines(&current).last().map(|r| r["seq"].clone()), Some(json!(201)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let metrics = Arc::new(Metrics::new());
    let audit = Audit {
        tx: None,
        live: tokio::sync::broadcast::channel(LIVE_BACKLOG).0,
        settings: hangar_config::Audit::default(),
        metrics: metrics.clone(),
        writer: Mutex::new(None),
        querying: Mutex::new(()),
    };
    audit.tool_call(call(1));
    assert_eq!(metrics.audit_dropped.with_label_values(&["queue_full"]).get(), 0, "disabled: nothing to drop");
    let (tx, _rx) = std::sync::mpsc::sync_channel(1);
    let audit = Audit { tx: Some(tx), ..audit };
    audit.tool_call(call(1));
    audit.tool_call(call(2));
    assert_eq!(metrics.audit_dropped.with_label_values(&["queue_full"]).get(), 1);
}

#[test]
fn queries_read_newest_first_and_stop_at_the_scan_limit() {
    let dir = temp_dir("scan");
    let metrics = Arc::new(Metrics::new());
    let audit = Audit::open(&hangar_config::Audit { fsync: Fsync::Never, ..settings(&dir, 1 << 30) }, metrics.clone())
        .expect("open");
    // Records of about 10 KiB: the scan limit holds a few thousand of them.
    let pad = "x".repeat(10_000);
    let records = MAX_SCAN / 10_000 + 200;
    for i in 0..records {
        let mut c = call(i);
        c.arguments = Some(json!({"n": i.to_string(), "pad": pad}));
        c.caller = if i == 5 { "client:first".into() } else { "client:other".into() };
        audit.tool_call(c);
    }
    audit.flush();
    let latest = audit.query(&Filter { limit: 3, ..Filter::default() }).expect("query");
    assert!(!latest.truncated, "the latest records are found without reading far");
    let n: Vec<Value> = latest.records.iter().map(|r| r["arguments"]["n"].clone()).collect();
    assert_eq!(
        n,
        vec![json!((records - 3).to_string()), json!((records - 2).to_string()), json!((records - 1).to_string())]
    );
    let old =
        audit.query(&Filter { caller: Some("client:first".into()), limit: 10, ..Filter::default() }).expect("query");
    assert!(old.truncated, "the first record lies beyond the scan limit");
    assert!(old.records.is_empty());
    assert_eq!(metrics.limit_hits.with_label_values(&["audit_scan"]).get(), 1);
    audit.close();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reverse_lines_handle_blocks_and_missing_final_newline() {
    let dir = temp_dir("reverse");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("f");
    let long = "y".repeat(200_000);
    std::fs::write(&path, format!("a\n\n{long}\nlast")).expect("write");
    let mut r = ReverseLines::new(File::open(&path).expect("open"));
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| r.next_line()).collect();
    assert_eq!(got, vec![b"last".to_vec(), long.into_bytes(), b"a".to_vec()]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_live_feed_carries_every_record_but_tool_calls_written_or_not() {
    let audit = Audit::disabled(Arc::new(Metrics::new()));
    audit.discovery("discovered", "nobody-listens", Some(0), "");
    let mut live = audit.subscribe();
    audit.tool_call(call(1));
    audit.config_rejected("file change", "bad yaml");
    audit.access_denied("user:eve", "modern", "fx", "tool \"fx__add\"", "default");
    let next = |live: &mut tokio::sync::broadcast::Receiver<Arc<str>>| {
        serde_json::from_str::<Value>(&live.try_recv().expect("a record")).expect("json")
    };
    let first = next(&mut live);
    assert_eq!((first["type"].as_str(), first["trigger"].as_str()), (Some("config_rejected"), Some("file change")));
    assert_eq!(next(&mut live)["principal"], "user:eve", "refusals are shown even with the trail off");
    assert!(live.try_recv().is_err(), "no tool call, nothing from before subscribing");
}
