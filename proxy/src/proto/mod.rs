//! The protocol's own facts, a leaf every other module may use (upstreams and telemetry included,
//! without reaching into the gateway's MCP server in `mcp/`): versions and eras, `_meta` keys,
//! the 2026-07-28 header codecs and checks, the list kinds.

pub mod field_lines;
pub mod fields;
pub mod headers;
pub mod lists;
pub mod protocol;
