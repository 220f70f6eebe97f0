//! Newline-delimited JSON-RPC framing (the stdio transport), with a bound on line length so a
//! peer cannot make the gateway buffer without limit.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Why a line could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// Longer than the limit (the line was consumed and dropped).
    TooLong,
    /// The stream failed.
    Io,
}

/// Reads one `\n`-terminated line into `buf` (cleared first), refusing lines longer than `max`:
/// the rest of such a line is consumed and dropped so the next read starts on the next line.
/// Returns the bytes consumed, 0 at end of input.
pub async fn read_bounded_line(
    r: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<usize, LineError> {
    buf.clear();
    let mut total = 0;
    let mut too_long = false;
    loop {
        let chunk = r.fill_buf().await.map_err(|_| LineError::Io)?;
        if chunk.is_empty() {
            return if too_long { Err(LineError::TooLong) } else { Ok(total) };
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        total += take;
        if !too_long {
            if buf.len() + take > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        r.consume(take);
        if done {
            return if too_long { Err(LineError::TooLong) } else { Ok(total) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn bounded_lines() {
        let data: &[u8] = b"short\nthis line is far too long\nok\n";
        let mut r = BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        assert_eq!(read_bounded_line(&mut r, &mut buf, 10).await, Ok(6));
        assert_eq!(buf, b"short\n");
        assert_eq!(read_bounded_line(&mut r, &mut buf, 10).await, Err(LineError::TooLong));
        assert_eq!(read_bounded_line(&mut r, &mut buf, 10).await, Ok(3));
        assert_eq!(buf, b"ok\n");
        assert_eq!(read_bounded_line(&mut r, &mut buf, 10).await, Ok(0));
    }
}
