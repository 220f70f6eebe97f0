//! Criterion micro-benchmarks of MCP Hangar's hot path live in `benches/`; this library is empty.
