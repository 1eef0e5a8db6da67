//! Gzip for scrapes without compressing the exposition on every request. The rendered families
//! are compressed once per refresh, ending in a sync flush (a byte-aligned deflate stream that
//! can be continued by any other deflate blocks); each scrape only compresses its few
//! self-metric lines as the final blocks and writes the trailer. The result is one ordinary gzip
//! member, which every client decodes.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

/// The fixed 10-byte gzip header: deflate, no name, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

/// A compressed prefix: the deflate blocks of `plain` up to a sync flush, and its CRC state.
pub struct Prefix {
    deflated: Bytes,
    crc: crc32fast::Hasher,
    len: u64,
}

/// Runs `c` over `input` with `flush` until it has consumed everything and, for a sync flush,
/// emitted it completely (zlib's rule: the flush is done when output space is left over).
fn deflate(c: &mut Compress, input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) {
    let mut consumed = 0usize;
    loop {
        if out.capacity() - out.len() < 32 * 1024 {
            out.reserve(out.len().max(64 * 1024));
        }
        let before = c.total_in();
        let status = c
            .compress_vec(&input[consumed..], out, flush)
            .expect("deflate of an in-memory buffer cannot fail");
        consumed += (c.total_in() - before) as usize;
        let done = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            _ => consumed == input.len() && out.len() < out.capacity(),
        };
        if done {
            return;
        }
    }
}

impl Prefix {
    pub fn new<T: AsRef<[u8]>>(parts: &[T]) -> Prefix {
        let len: usize = parts.iter().map(|p| p.as_ref().len()).sum();
        let mut c = Compress::new(Compression::fast(), false);
        let mut out = Vec::with_capacity(len / 6 + 1024);
        let mut crc = crc32fast::Hasher::new();
        for p in parts {
            deflate(&mut c, p.as_ref(), FlushCompress::None, &mut out);
            crc.update(p.as_ref());
        }
        deflate(&mut c, &[], FlushCompress::Sync, &mut out);
        Prefix {
            deflated: Bytes::from(out),
            crc,
            len: len as u64,
        }
    }

    /// The gzip body of the prefix's text followed by `suffix`, as chunks (the big one shared).
    pub fn body(&self, suffix: &[u8]) -> [Bytes; 3] {
        let mut c = Compress::new(Compression::fast(), false);
        let mut tail = Vec::with_capacity(suffix.len() / 2 + 64);
        deflate(&mut c, suffix, FlushCompress::Finish, &mut tail);
        let mut crc = self.crc.clone();
        crc.update(suffix);
        tail.extend_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952).
        let size = (self.len + suffix.len() as u64) as u32;
        tail.extend_from_slice(&size.to_le_bytes());
        [
            Bytes::from_static(&HEADER),
            self.deflated.clone(),
            Bytes::from(tail),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(parts: &[Bytes]) -> Vec<u8> {
        let all: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&all[..])
            .read_to_end(&mut out)
            .expect("a valid gzip member");
        // One member only: nothing may follow it.
        let mut d = flate2::read::GzDecoder::new(&all[..]);
        let mut sink = Vec::new();
        d.read_to_end(&mut sink).expect("decode");
        assert!(d.into_inner().is_empty(), "bytes after the gzip member");
        out
    }

    #[test]
    fn prefix_and_suffix_decode_to_their_concatenation() {
        let mut big = String::new();
        for i in 0..200_000 {
            big.push_str(&format!(
                "litellm_spend_metric_total{{team=\"t{}\"}} {i}\n",
                i % 977
            ));
        }
        let own = b"litellm_exporter_database_up 1\n";
        for plain in [&b""[..], b"x", big.as_bytes()] {
            let p = Prefix::new(&[plain]);
            let mut want = plain.to_vec();
            want.extend_from_slice(own);
            assert_eq!(gunzip(&p.body(own)), want);
            assert_eq!(gunzip(&p.body(b"")), plain);
        }
        // Parts (one per family) compress as their concatenation, empty parts included.
        let (a, b) = big.as_bytes().split_at(big.len() / 3);
        let p = Prefix::new(&[a, &b""[..], b]);
        assert_eq!(gunzip(&p.body(own)), [big.as_bytes(), own].concat());
        let p = Prefix::new(&[big.as_bytes()]);
        assert!(p.deflated.len() < big.len() / 4, "the prefix is compressed");
    }
}
