//! The OpenMetrics text format, for scrapers that ask for it (`Accept:
//! application/openmetrics-text`). The `prometheus` crate only writes the classic text format; the
//! differences that matter for our series are small: counter families are named without `_total`
//! (their samples keep it), float formatting, escaping, and the closing `# EOF`.

use std::fmt::Write as _;

use prometheus::proto::{LabelPair, MetricFamily, MetricType};

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.split(',').any(|part| part.trim().starts_with("application/openmetrics-text")))
}

/// Encodes `families` as OpenMetrics text.
pub fn encode(families: &[MetricFamily]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for mf in families {
        let kind = mf.get_field_type();
        let name = match kind {
            MetricType::COUNTER => mf.name().strip_suffix("_total").unwrap_or(mf.name()),
            _ => mf.name(),
        };
        let type_name = match kind {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            MetricType::UNTYPED => "unknown",
        };
        let _ = writeln!(out, "# TYPE {name} {type_name}");
        if !mf.help().is_empty() {
            let _ = writeln!(out, "# HELP {name} {}", escape(mf.help()));
        }
        for m in mf.get_metric() {
            let labels = m.get_label();
            match kind {
                MetricType::COUNTER => sample(&mut out, name, "_total", labels, None, m.get_counter().get_value()),
                MetricType::GAUGE => sample(&mut out, name, "", labels, None, m.get_gauge().get_value()),
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    for b in h.get_bucket() {
                        let le = float(b.upper_bound());
                        sample(&mut out, name, "_bucket", labels, Some(&le), b.cumulative_count() as f64);
                    }
                    if h.get_bucket().last().is_none_or(|b| b.upper_bound().is_finite()) {
                        sample(&mut out, name, "_bucket", labels, Some("+Inf"), h.get_sample_count() as f64);
                    }
                    sample(&mut out, name, "_sum", labels, None, h.get_sample_sum());
                    sample(&mut out, name, "_count", labels, None, h.get_sample_count() as f64);
                }
                MetricType::SUMMARY | MetricType::UNTYPED => {}
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

fn sample(out: &mut String, name: &str, suffix: &str, labels: &[LabelPair], le: Option<&str>, value: f64) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        for l in labels {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{}=\"{}\"", l.name(), escape(l.value()));
        }
        if let Some(le) = le {
            if !first {
                out.push(',');
            }
            let _ = write!(out, "le=\"{le}\"");
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&float(value));
    out.push('\n');
}

/// Floats as OpenMetrics writes them: integers with `.0`, infinities as `+Inf`/`-Inf`.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        v.to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', r"\\").replace('\n', r"\n").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::Metrics;

    #[test]
    fn writes_counters_histograms_and_the_end_marker() {
        let m = Metrics::new();
        m.tool_call("fx", "fx__add", "ok", std::time::Duration::from_millis(3));
        m.init_provider("fx");
        let text = m.render_openmetrics();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE mcp_hangar_tool_calls counter\n"), "{text}");
        assert!(
            text.contains("mcp_hangar_tool_calls_total{outcome=\"ok\",provider=\"fx\",tool=\"fx__add\"} 1.0\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE mcp_hangar_tool_call_duration_seconds histogram\n"), "{text}");
        assert!(
            text.contains(
                "mcp_hangar_tool_call_duration_seconds_bucket{provider=\"fx\",tool=\"fx__add\",le=\"0.005\"} 1.0\n"
            ),
            "{text}"
        );
        assert!(text.contains("le=\"+Inf\"} 1.0\n"), "{text}");
        assert!(text.contains("mcp_hangar_provider_state{provider=\"fx\",state=\"COLD\"} 1.0\n"), "{text}");
        assert!(!text.contains("_total_total"), "{text}");
        assert!(wanted(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")));
        assert!(!wanted(Some("text/plain")) && !wanted(None));
    }
}
