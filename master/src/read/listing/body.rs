//! The bytes of a listing: its chunks, each kept plain and (for the first reader that accepts
//! gzip) compressed as a deflate segment that joins with the others into one gzip stream, and the
//! body that hands them to the connection without copying them.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::body::Bytes;

/// A body's frames, shared by every reader of one version.
pub(super) type Frames = Arc<[Bytes]>;

/// Consecutive entries joined by `,`, and the same compressed for readers that accept gzip
/// (compressed once, by the first such reader, and kept as long as the chunk).
pub(super) struct Chunk {
    pub(super) plain: Bytes,
    gzip: OnceLock<Segment>,
}

impl Chunk {
    pub(super) fn new(plain: Bytes) -> Arc<Chunk> {
        Arc::new(Chunk { plain, gzip: OnceLock::new() })
    }

    fn gzip(&self) -> &Segment {
        self.gzip.get_or_init(|| Segment::of(&self.plain))
    }
}

/// A piece of a gzip body: raw deflate blocks ending on a byte boundary (sync flush, not final),
/// so that pieces compressed on their own join into one deflate stream; with the CRC-32 and length
/// of what it holds, which combine into the gzip trailer.
struct Segment {
    deflated: Bytes,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Segment {
    fn of(data: &[u8]) -> Segment {
        use std::io::Write;
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        // Writes into a Vec cannot fail.
        let _ = encoder.write_all(data);
        let _ = encoder.flush();
        let deflated = Bytes::from(std::mem::take(encoder.get_mut()));
        let mut crc = crc32fast::Hasher::new();
        crc.update(data);
        Segment { deflated, crc, len: data.len() as u64 }
    }
}

/// `[`, `,` and `]` as gzip segments, made once.
fn punctuation() -> &'static [Segment; 3] {
    static PUNCTUATION: OnceLock<[Segment; 3]> = OnceLock::new();
    PUNCTUATION.get_or_init(|| [Segment::of(b"["), Segment::of(b","), Segment::of(b"]")])
}

/// A listing body: `[`, the chunks joined by `,`, `]`, each chunk handed to the connection as
/// it is (shared, not copied), or the same as gzip; its length is known, so it is sent with a
/// `Content-Length`.
pub struct ListingBody {
    frames: Frames,
    next: usize,
    remaining: u64,
    /// Sent as gzip (the answer says `Content-Encoding: gzip`).
    pub gzip: bool,
}

/// The fixed gzip header: deflate, no name, no time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// An empty final deflate block: the end of the stream.
const DEFLATE_END: [u8; 2] = [0x03, 0x00];

/// `[`, the chunks joined by `,`, `]`.
pub(super) fn plain_frames(chunks: &[Arc<Chunk>]) -> Frames {
    let mut frames = Vec::with_capacity(2 * chunks.len() + 2);
    frames.push(Bytes::from_static(b"["));
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            frames.push(Bytes::from_static(b","));
        }
        frames.push(c.plain.clone());
    }
    frames.push(Bytes::from_static(b"]"));
    frames.into()
}

/// The same as one gzip stream: header, the segments, the end block, CRC-32 and length.
pub(super) fn gzip_frames(chunks: &[Arc<Chunk>]) -> Frames {
    let [open, comma, close] = punctuation();
    let mut segments: Vec<&Segment> = Vec::with_capacity(2 * chunks.len() + 2);
    segments.push(open);
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            segments.push(comma);
        }
        segments.push(c.gzip());
    }
    segments.push(close);
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    let mut frames = Vec::with_capacity(segments.len() + 3);
    frames.push(Bytes::from_static(&GZIP_HEADER));
    for s in segments {
        crc.combine(&s.crc);
        len += s.len;
        frames.push(s.deflated.clone());
    }
    frames.push(Bytes::from_static(&DEFLATE_END));
    let mut trailer = Vec::with_capacity(8);
    trailer.extend_from_slice(&crc.finalize().to_le_bytes());
    // ISIZE: the length modulo 2^32, as gzip defines it.
    trailer.extend_from_slice(&((len & 0xffff_ffff) as u32).to_le_bytes());
    frames.push(Bytes::from(trailer));
    frames.into()
}

impl ListingBody {
    pub(super) fn from_frames(frames: Frames, gzip: bool) -> ListingBody {
        let remaining = frames.iter().map(|f| f.len() as u64).sum();
        ListingBody { frames, next: 0, remaining, gzip }
    }
}

impl http_body::Body for ListingBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let Some(frame) = self.frames.get(self.next).cloned() else { return Poll::Ready(None) };
        self.next += 1;
        self.remaining = self.remaining.saturating_sub(frame.len() as u64);
        Poll::Ready(Some(Ok(http_body::Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn bytes_of(body: ListingBody) -> Vec<u8> {
        let expected = http_body::Body::size_hint(&body).exact();
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(Some(bytes.len() as u64), expected);
        bytes.to_vec()
    }

    /// The plain body; checks that the gzip body holds the same.
    async fn collect(parts: &[&'static str]) -> String {
        let chunks: Vec<Arc<Chunk>> = parts.iter().map(|p| Chunk::new(Bytes::from_static(p.as_bytes()))).collect();
        let plain = String::from_utf8(bytes_of(ListingBody::from_frames(plain_frames(&chunks), false)).await).unwrap();
        let gzipped = bytes_of(ListingBody::from_frames(gzip_frames(&chunks), true)).await;
        let mut unzipped = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut unzipped).unwrap();
        assert_eq!(unzipped, plain);
        plain
    }

    #[tokio::test]
    async fn bodies_are_json_arrays_of_their_chunks() {
        assert_eq!(collect(&[]).await, "[]");
        assert_eq!(collect(&[r#"{"a":1}"#]).await, r#"[{"a":1}]"#);
        assert_eq!(collect(&[r#"{"a":1},{"b":2}"#, r#"{"c":3}"#]).await, r#"[{"a":1},{"b":2},{"c":3}]"#);
        let big: &'static str = Box::leak(format!("{{\"x\":\"{}\"}}", "abc".repeat(100_000)).into_boxed_str());
        let listed = collect(&[big, big, r#"{"y":2}"#]).await;
        assert_eq!(listed.len(), 2 * big.len() + 11);
    }
}
