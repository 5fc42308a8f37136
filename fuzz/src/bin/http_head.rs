//! The HTTP/1.1 request head and body framing of the front end (`api::server::head`), driven the
//! way a connection drives it (`api::server::conn`): bytes arrive in reads of varying size, blank
//! lines before a request line are dropped, `Scan` finds the end of the head within the limits,
//! `Head::parse` reads it, `framing` chooses the body's length, the body is read (or decoded
//! chunked) against a 64 KiB limit, and keep-alive requests follow one another.
//!
//! Input: one byte choosing the read sizes, then the bytes the client sends, with two escapes so
//! that heads near the limits fit in a small input: `FF hi lo b` is the byte b repeated
//! (hi·256+lo) % 20000 times, `FE hi lo m` repeats the last hi·256+lo bytes m more times.
//!
//! Asserts: a complete head is within the buffer and the caps (≤ 64 KiB, lines ≤ 8 KiB + CRLF,
//! ≤ 100 header lines); refusals are 414/431 while scanning, 400/431 when parsing, 400 for the
//! framing; the parsed head is at most 3× its bytes (values read lossily); the outcome does
//! not depend on how the bytes were split into reads (the same head end, the same refusal, the
//! same decoded chunked body as when all came at once); a decoded body is never longer than the
//! bytes it came from.

use afl::fuzz;
use vnetd::fuzzing::{Chunked, Framing, Head, Scan, Scanned, Step, MAX_HEAD, MAX_HEADERS, MAX_LINE};

/// The SOAP listener's default `max_body_bytes`.
const LIMIT: u64 = 64 * 1024;
/// Requests served from one input at most.
const MAX_REQUESTS: usize = 16;
const MAX_EXPANDED: usize = 256 * 1024;

fn expand(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() && out.len() < MAX_EXPANDED {
        match data[i] {
            0xFF if i + 3 < data.len() => {
                let n = (usize::from(data[i + 1]) << 8 | usize::from(data[i + 2])) % 20_000;
                out.resize(out.len() + n, data[i + 3]);
                i += 4;
            }
            0xFE if i + 3 < data.len() => {
                let k = (usize::from(data[i + 1]) << 8 | usize::from(data[i + 2])).min(out.len());
                let from = out.len() - k;
                for _ in 0..data[i + 3] {
                    out.extend_from_within(from..from + k);
                    if out.len() >= MAX_EXPANDED {
                        break;
                    }
                }
                i += 4;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out.truncate(MAX_EXPANDED);
    out
}

/// The client's bytes, handed out in reads of pseudo-random sizes up to `max`.
struct Client<'a> {
    stream: &'a [u8],
    pos: usize,
    max: usize,
    rng: u32,
}

impl Client<'_> {
    /// One read into `buf`; false at the end of the stream.
    fn read_more(&mut self, buf: &mut Vec<u8>) -> bool {
        if self.pos == self.stream.len() {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        let n = (1 + self.rng as usize % self.max).min(self.stream.len() - self.pos);
        buf.extend_from_slice(&self.stream[self.pos..self.pos + n]);
        self.pos += n;
        true
    }

    fn rest(&self) -> &[u8] {
        &self.stream[self.pos..]
    }
}

fn main() {
    fuzz!(|data: &[u8]| {
        let Some((&sel, rest)) = data.split_first() else { return };
        let stream = expand(rest);
        let max = [1, 2, 3, 7, 64, 1460, 16 * 1024, usize::MAX][usize::from(sel & 7)];
        let mut client = Client { stream: &stream, pos: 0, max, rng: 0x9E37_79B9 ^ u32::from(sel) };
        serve(&mut client);
    });
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Complete(usize),
    Refuse(u16),
    Closed,
}

fn serve(client: &mut Client) {
    let mut buf = Vec::new();
    for _ in 0..MAX_REQUESTS {
        if buf.is_empty() && !client.read_more(&mut buf) {
            return;
        }
        let Some(head) = read_head(&mut buf, client) else { return };
        let _ = head.expects_continue();
        let keep_alive = head.keep_alive() && !head.ambiguous();
        let framing = match head.framing() {
            Ok(f) => f,
            Err(s) => {
                assert_eq!(s, 400);
                return;
            }
        };
        match framing {
            Framing::Length(n) if n > LIMIT => return, // 413 before a byte of the body
            Framing::Length(n) => {
                let n = n as usize;
                while buf.len() < n {
                    if !client.read_more(&mut buf) {
                        return;
                    }
                }
                buf.drain(..n);
            }
            Framing::Chunked => {
                if !read_chunked(&mut buf, client) {
                    return;
                }
            }
        }
        if !keep_alive {
            return;
        }
    }
}

/// As `Conn::read_head`, with the checks. None: refused or the client went away.
fn read_head(buf: &mut Vec<u8>, client: &mut Client) -> Option<Head> {
    // What the scan must find had every byte come at once (blank lines before it dropped).
    let mut all = buf.clone();
    all.extend_from_slice(client.rest());
    let blank = all.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
    let expected = match Scan::default().advance(&all[blank..]) {
        Scanned::Complete(n) => Outcome::Complete(n),
        Scanned::Refuse(s) => Outcome::Refuse(s),
        Scanned::Incomplete => Outcome::Closed,
    };
    let mut scan = Scan::default();
    let got = loop {
        let blank = buf.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        if blank > 0 {
            buf.drain(..blank);
            scan = Scan::default();
        }
        match scan.advance(buf) {
            Scanned::Complete(n) => break Outcome::Complete(n),
            Scanned::Refuse(s) => break Outcome::Refuse(s),
            Scanned::Incomplete => {}
        }
        if !client.read_more(buf) {
            break Outcome::Closed;
        }
    };
    assert_eq!(got, expected, "the outcome depends on how the bytes arrived");
    let n = match got {
        Outcome::Complete(n) => n,
        Outcome::Refuse(s) => {
            assert!(s == 414 || s == 431, "scan refused with {s}");
            return None;
        }
        Outcome::Closed => return None,
    };
    assert!(n <= buf.len());
    assert!(n <= MAX_HEAD, "a head of {n} bytes passed the {MAX_HEAD}-byte cap");
    let lines: Vec<&[u8]> = buf[..n].split_inclusive(|&b| b == b'\n').collect();
    assert!(lines.len() <= MAX_HEADERS + 2, "{} lines", lines.len());
    assert!(lines.iter().all(|l| l.len() <= MAX_LINE + 2), "a line over {MAX_LINE} bytes");
    let head = Head::parse(&buf[..n]);
    buf.drain(..n);
    match head {
        Ok(h) => {
            assert!(h.headers.len() <= MAX_HEADERS);
            assert!(!h.method.is_empty() && !h.target.is_empty() && h.minor <= 1);
            // Header values are read lossily: a byte that is not UTF-8 becomes U+FFFD (3 bytes).
            let size: usize = h.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() + h.method.len() + h.target.len();
            assert!(size <= 3 * n, "a {n}-byte head read as {size} bytes");
            Some(h)
        }
        Err(s) => {
            assert!(s == 400 || s == 431, "parse refused with {s}");
            None
        }
    }
}

/// As `Conn::read_body` for a chunked body kept up to LIMIT; false: refused or gone.
fn read_chunked(buf: &mut Vec<u8>, client: &mut Client) -> bool {
    // The same body decoded from every byte at once.
    let mut all = buf.clone();
    all.extend_from_slice(client.rest());
    let (mut once, mut once_data) = (Vec::new(), 0u64);
    let (once_used, once_step) = Chunked::default().feed(&all, Some(&mut once), &mut once_data);
    assert!(once_used <= all.len() && once.len() as u64 == once_data && once.len() <= once_used);

    let (mut dec, mut body, mut data, mut used_total) = (Chunked::default(), Vec::new(), 0u64, 0usize);
    let step = loop {
        let (used, step) = dec.feed(buf, Some(&mut body), &mut data);
        assert!(used <= buf.len());
        buf.drain(..used);
        used_total += used;
        assert_eq!(body.len() as u64, data);
        assert!(body.len() <= used_total);
        if data > LIMIT {
            return false; // 413
        }
        match step {
            Step::More if client.read_more(buf) => {}
            s => break s,
        }
    };
    assert_eq!(body, once, "the decoded body depends on how the bytes arrived");
    match (step, once_step) {
        (Step::Done, Step::Done) => {
            assert_eq!(used_total, once_used);
            true
        }
        (Step::Bad, Step::Bad) | (Step::More, Step::More) => false,
        (a, b) => panic!("chunked decoding ended {} read by read, {} at once", name(&a), name(&b)),
    }
}

fn name(s: &Step) -> &'static str {
    match s {
        Step::More => "More",
        Step::Done => "Done",
        Step::Bad => "Bad",
    }
}
