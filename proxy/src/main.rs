//! The `mcp-hangar` binary: all logic lives in the library; this only hands over the exit code.

/// mimalloc rather than glibc's malloc: the request path's short-lived buffers made up about half
/// of the slow path's CPU per request in the load test (loadtest/README.md has the numbers).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mcp_hangar::cli::main()
}
