//! vnetd: `chunked_transfer::Decoder` collects a chunk-size line into a `Vec` until it sees
//! `\r`, without any bound: a client sending an endless chunk-size line grows server memory for
//! as long as it keeps sending. This wrapper caps how much the decoder may read per `read()`
//! call: one chunk-size line (at most `MAX_CHUNK_LINE` bytes, extensions included), at most
//! `MAX_DATA_PER_READ` data bytes and the CRLFs around them. Going over it is an error (never a
//! silent EOF), so the body is not taken as complete and the connection gets closed.

use std::io::{Error as IoError, ErrorKind, Read, Result as IoResult};

use chunked_transfer::Decoder;

/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Most data bytes returned by one `read()` (so that the budget does not grow with the
/// caller's buffer).
const MAX_DATA_PER_READ: usize = 64 * 1024;

pub struct BoundedChunkedDecoder<R: Read> {
    decoder: Decoder<Budget<R>>,
}

impl<R: Read> BoundedChunkedDecoder<R> {
    pub fn new(source: R) -> Self {
        BoundedChunkedDecoder {
            decoder: Decoder::new(Budget {
                inner: source,
                left: 0,
            }),
        }
    }
}

impl<R: Read> Read for BoundedChunkedDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        // one decoder call reads at most: size line + CRLF, `len` data bytes, CRLF
        // (or the last chunk's CRLF)
        let len = buf.len().min(MAX_DATA_PER_READ);
        self.decoder.get_mut().left = MAX_CHUNK_LINE + len + 4;
        self.decoder.read(&mut buf[..len])
    }
}

/// Reads at most `left` bytes from `inner`, then fails.
struct Budget<R> {
    inner: R,
    left: usize,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            return Err(IoError::new(
                ErrorKind::InvalidData,
                "chunk size line too long",
            ));
        }
        let n = buf.len().min(self.left);
        let read = self.inner.read(&mut buf[..n])?;
        self.left -= read;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedChunkedDecoder;
    use std::io::Read;

    #[test]
    fn decodes_normal_bodies() {
        let encoded = b"3\r\nhel\r\nb;ext=1\r\nlo world!!!\r\n0\r\n\r\n";
        let mut decoded = String::new();
        BoundedChunkedDecoder::new(&encoded[..])
            .read_to_string(&mut decoded)
            .unwrap();
        assert_eq!(decoded, "hello world!!!");
    }

    #[test]
    fn decodes_large_chunks_into_large_buffers() {
        let mut encoded = b"30000\r\n".to_vec();
        encoded.extend(std::iter::repeat_n(b'd', 0x30000));
        encoded.extend_from_slice(b"\r\n5\r\nhello\r\n0\r\n\r\n");
        let mut decoded = Vec::with_capacity(1 << 20);
        BoundedChunkedDecoder::new(&encoded[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded.len(), 0x30000 + 5);
        assert!(decoded.ends_with(b"dhello"));
    }

    #[test]
    fn refuses_endless_chunk_size_line() {
        let encoded = vec![b'0'; 1 << 20];
        let mut decoder = BoundedChunkedDecoder::new(&encoded[..]);
        let err = decoder.read(&mut [0u8; 1024]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
