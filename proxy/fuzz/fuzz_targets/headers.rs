//! `cargo fuzz run headers`: see `mcp_hangar::fuzz::headers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_hangar::fuzz::headers(data));
