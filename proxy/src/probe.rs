//! `mcp-hangar probe URL`: one bounded HTTP GET whose exit status says whether the answer was a
//! success. It exists for container health checks: the runtime image has no shell, curl or wget,
//! and the gateway binary is already there.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest status line read; a health endpoint's answer starts well within it.
const MAX_HEAD: usize = 1024;

/// Why a probe failed, printed on stderr.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Not a plain `http://` URL.
    #[error("only http://HOST[:PORT]/PATH URLs can be probed, not {0:?}")]
    Url(String),
    /// No address of the host accepted a connection.
    #[error("cannot reach {addr}: {source}")]
    Connect {
        /// The host and port tried.
        addr: String,
        /// The last connection error.
        source: std::io::Error,
    },
    /// Writing, reading or the deadline failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The answer did not start with an HTTP status line.
    #[error("not an HTTP answer: {0:?}")]
    Answer(String),
    /// A status other than 2xx.
    #[error("HTTP {0}")]
    Status(u16),
}

/// GETs `url` within `timeout` in all; Ok when the status is 2xx.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let (authority, path) = split_url(url).ok_or_else(|| ProbeError::Url(url.to_owned()))?;
    let deadline = Instant::now() + timeout;
    let target = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
    let addrs = target.to_socket_addrs().map_err(|source| ProbeError::Connect { addr: target.clone(), source })?;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or(ProbeError::Connect { addr: target, source: last })?;
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    // One write: `write!` on a socket would send each piece of the format as its own segment.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: mcp-hangar-probe\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < MAX_HEAD {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match stream.read(&mut buf)? {
            0 => break,
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| ProbeError::Answer(line.chars().take(80).collect()))?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Status(status))
    }
}

/// The time left before `deadline`, or a timeout error once it has passed.
fn remaining(deadline: Instant) -> Result<Duration, ProbeError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| ProbeError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")))
}

/// A plain `http://host[:port]/path` URL's authority and path (`/` when absent); `None` for any
/// other scheme, a user in the authority, or a URL `http::Uri` does not parse.
fn split_url(url: &str) -> Option<(http::uri::Authority, String)> {
    let uri: http::Uri = url.parse().ok()?;
    let authority = uri.authority().filter(|a| !a.as_str().contains('@') && !a.host().is_empty())?.clone();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    (uri.scheme_str() == Some("http")).then(|| (authority, if path.is_empty() { "/" } else { path }.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                // The whole request first: closing with unread bytes would reset the connection.
                let (mut request, mut buf) = (Vec::new(), [0u8; 512]);
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(answer.as_bytes());
            }
        });
        format!("http://{addr}/health/live")
    }

    #[test]
    fn a_2xx_answer_passes_and_others_fail() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(probe(&ok, Duration::from_secs(2)).expect("a 2xx answer"), 200);
        let down = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(matches!(probe(&down, Duration::from_secs(2)), Err(ProbeError::Status(503))));
        let junk = serve_once("SSH-2.0-OpenSSH\r\n");
        assert!(matches!(probe(&junk, Duration::from_secs(2)), Err(ProbeError::Answer(_))));
    }

    #[test]
    fn a_silent_server_times_out_instead_of_hanging() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("address"));
        let started = Instant::now();
        assert!(probe(&url, Duration::from_millis(300)).is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(listener);
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        for bad in ["https://x/", "ftp://x", "http://", "http://a b/", "http://u@h/", "localhost:8000"] {
            assert!(matches!(probe(bad, Duration::from_secs(1)), Err(ProbeError::Url(_))), "{bad}");
        }
        let (authority, path) = split_url("http://h:1").expect("a plain URL");
        assert_eq!((authority.as_str(), path.as_str()), ("h:1", "/"));
    }
}
