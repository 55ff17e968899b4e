//! Entry bytes in an append-only file beside the key-value engine
//! (`log.entries` in the data directory): the engine keeps, under each
//! entry's key, where its bytes are instead of the bytes.
//!
//! Why: an entry is written once and read rarely, and an ordered engine
//! pays for keeping large values in its tree (sled rewrites whole leaf
//! pages; an LSM tree copies values through every compaction). Appended
//! here, an entry's bytes reach the disk once.
//!
//! Layout: an 8-byte magic, then frames. A frame is a 16-byte header —
//! payload length (u32), seq (u64), CRC-32 of seq and payload (u32), all
//! big endian — and the payload: the entry's bytes exactly as hashed and
//! stored, or, when the length's top bit is set, those bytes compressed
//! (`entry_compression.rs`: zstd and a fixed dictionary). The CRC
//! (over the payload as stored) finds a frame a crash or a full disk left
//! half written; the Merkle tree, not the CRC, is what proves an entry
//! unchanged.
//!
//! Why compressed: entries are JSON with the same member names, seals and
//! escaped disclosures over and over, and their bytes are most of what a
//! decision writes to disk. Compressed one by one (an entry is still read
//! alone) against a dictionary of typical entries, they shrink to under a
//! third, for a few microseconds each on the writer.
//!
//! Files written before compression existed carry the magic `…\x01` and no
//! compressed frame; a writable open rewrites it to `…\x02`, so an older
//! trustpath refuses the file instead of misreading its frames.
//!
//! A frame whose seq is [`CLAIMS`] holds used `jti`s instead of an entry
//! (the claims made since the commit before).
//!
//! The file is the log's durable record. A commit writes its frames and
//! syncs the file first, and only then writes the engine's batch that
//! points to them (`EntryFile::commit`), so the engine never points at
//! bytes a crash lost; the engine is flushed later, and what it had not
//! flushed is indexed again from the frames that follow its newest entry's
//! (`ordered.rs`, `settle`, which runs at open and after a failure). Frames
//! nothing points to there (a commit cut short, a frame retention
//! superseded) are zeroed or cut off.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::entry_compression::{compress, decompress};

use crate::log::LogError;

const MAGIC: &[u8; 8] = b"tplogE\x00\x02";
/// The magic of a file written before frames could be compressed.
const MAGIC_UNCOMPRESSED: &[u8; 8] = b"tplogE\x00\x01";
const HEADER: u64 = 16;
/// The top bit of a frame's length: its payload is compressed.
const COMPRESSED: u32 = 1 << 31;

/// The seq a frame of used-`jti` claims carries instead of an entry's.
pub(super) const CLAIMS: u64 = u64::MAX;
/// The seq of a frame whose bytes were erased (zeros).
const ERASED: u64 = u64::MAX - 1;
/// A location as the engine stores it: a 0x00 tag (no entry's bytes start
/// with it: they are JSON, or empty once expired), offset, length.
const LOCATION_LEN: usize = 13;

/// Where the file lives in a data directory.
pub(super) fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("log.entries")
}

/// Where an entry's frame is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    pub offset: u64,
    pub len: u32,
}

impl Location {
    pub fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(LOCATION_LEN);
        value.push(0);
        value.extend_from_slice(&self.offset.to_be_bytes());
        value.extend_from_slice(&self.len.to_be_bytes());
        value
    }

    /// The location a stored value holds, if it holds one.
    pub fn decode(value: &[u8]) -> Option<Self> {
        if value.len() != LOCATION_LEN || value[0] != 0 {
            return None;
        }
        Some(Self {
            offset: u64::from_be_bytes(value[1..9].try_into().ok()?),
            len: u32::from_be_bytes(value[9..13].try_into().ok()?),
        })
    }

    /// One past the frame's last byte.
    fn end(&self) -> u64 {
        self.offset + HEADER + u64::from(self.len)
    }
}

fn crc(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_be_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one frame (header, then payload) to `out`: the one place a
/// frame's layout is written.
fn write_frame(out: &mut Vec<u8>, seq: u64, len: u32, compressed: bool, payload: &[u8]) {
    let flag = if compressed { COMPRESSED } else { 0 };
    out.extend_from_slice(&(len | flag).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&crc(seq, payload).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Frames built in memory for one commit, placed when it is written.
#[derive(Default)]
pub(super) struct Frames {
    bytes: Vec<u8>,
    /// seq, offset within `bytes`, payload length.
    placed: Vec<(u64, u64, u32)>,
}

impl Frames {
    /// Entry `seq`'s bytes, compressed when that pays.
    pub fn push(&mut self, seq: u64, bytes: &[u8]) -> Result<(), LogError> {
        match compress(bytes) {
            Some(compressed) => self.push_payload(seq, true, &compressed),
            None => self.push_payload(seq, false, bytes),
        }
    }

    fn push_payload(&mut self, seq: u64, compressed: bool, payload: &[u8]) -> Result<(), LogError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|len| len & COMPRESSED == 0)
            .ok_or_else(|| LogError::Encode(format!("entry {seq} is {} bytes", payload.len())))?;
        self.placed.push((seq, self.bytes.len() as u64, len));
        write_frame(&mut self.bytes, seq, len, compressed, payload);
        Ok(())
    }

    /// A frame of used-`jti` claims: each its key's length (u32), the key,
    /// and the Unix second it is kept until (i64), big endian.
    pub fn push_claims(&mut self, claims: &[(Vec<u8>, i64)]) -> Result<(), LogError> {
        let mut payload = Vec::new();
        for (key, until) in claims {
            let len = u32::try_from(key.len())
                .map_err(|_| LogError::Encode(format!("a jti key of {} bytes", key.len())))?;
            payload.extend_from_slice(&len.to_be_bytes());
            payload.extend_from_slice(key);
            payload.extend_from_slice(&until.to_be_bytes());
        }
        self.push_payload(CLAIMS, false, &payload)
    }

    pub fn is_empty(&self) -> bool {
        self.placed.is_empty()
    }

    /// Each entry frame's seq and location, had the frames been written
    /// at `base`.
    fn at(&self, base: u64) -> Vec<(u64, Location)> {
        self.placed
            .iter()
            .filter(|(seq, ..)| *seq != CLAIMS)
            .map(|&(seq, offset, len)| {
                (
                    seq,
                    Location {
                        offset: base + offset,
                        len,
                    },
                )
            })
            .collect()
    }
}

/// A frame read back by [`EntryFile::frames_from`].
pub(super) struct FoundFrame {
    pub seq: u64,
    pub at: Location,
}

/// The open file.
pub(super) struct EntryFile {
    path: PathBuf,
    file: File,
    /// Where the next frame goes. Held from a commit's first write until
    /// the engine's batch is stored, so `settle` never cuts off a frame
    /// an engine batch may still come to point at.
    tail: Mutex<u64>,
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> LogError {
    LogError::Storage(format!("{what} {}: {e}", path.display()))
}

impl EntryFile {
    /// Creates the file (with its magic, synced, and the directory entry
    /// synced too): a new log keeps its entries here.
    pub fn create(path: &Path) -> Result<Self, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io_error(path, "cannot create", e))?;
        file.write_all_at(MAGIC, 0)
            .and_then(|_| file.sync_all())
            .map_err(|e| io_error(path, "cannot write", e))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(dir, "cannot sync", e))?;
        }
        Self::open(path, true)
    }

    /// Opens an existing file; `writable` for a server or a writing command.
    pub fn open(path: &Path, writable: bool) -> Result<Self, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| io_error(path, "cannot open", e))?;
        let size = file
            .metadata()
            .map_err(|e| io_error(path, "cannot read", e))?
            .len();
        let mut magic = [0u8; 8];
        if size < MAGIC.len() as u64
            || file.read_exact_at(&mut magic, 0).is_err()
            || (&magic != MAGIC && &magic != MAGIC_UNCOMPRESSED)
        {
            return Err(LogError::Malformed(format!(
                "{} is not a trustpath entry file (its first 8 bytes are not the magic; {size} bytes long)",
                path.display()
            )));
        }
        if writable && &magic == MAGIC_UNCOMPRESSED {
            // Compressed frames may follow from now on.
            file.write_all_at(MAGIC, 0)
                .and_then(|_| file.sync_data())
                .map_err(|e| io_error(path, "cannot write", e))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            tail: Mutex::new(size),
        })
    }

    fn lock_tail(&self) -> std::sync::MutexGuard<'_, u64> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn corrupt(&self, seq: u64, at: Location, why: impl std::fmt::Display) -> LogError {
        LogError::Malformed(format!(
            "entry {seq}: its {} bytes at offset {} of {}: {why}",
            at.len,
            at.offset,
            self.path.display()
        ))
    }

    /// Entry `seq`'s bytes from its frame at `at`, checked against the
    /// frame's header and CRC.
    pub fn read(&self, seq: u64, at: Location) -> Result<Vec<u8>, LogError> {
        let mut frame = vec![0u8; (HEADER + u64::from(at.len)) as usize];
        self.file
            .read_exact_at(&mut frame, at.offset)
            .map_err(|e| {
                let size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
                self.corrupt(
                    seq,
                    at,
                    format!("cannot be read ({e}; the file is {size} bytes)"),
                )
            })?;
        let head = header(&frame);
        if head.len != at.len || head.seq != seq {
            return Err(self.corrupt(
                seq,
                at,
                format!(
                    "the frame there is entry {}'s, {} bytes",
                    head.seq, head.len
                ),
            ));
        }
        let payload = frame.split_off(HEADER as usize);
        if crc(seq, &payload) != head.crc {
            return Err(self.corrupt(seq, at, "they fail their checksum"));
        }
        if !head.compressed {
            return Ok(payload);
        }
        decompress(&payload).map_err(|why| self.corrupt(seq, at, why))
    }

    /// Writes `frames` at the end of the file and syncs it, then runs
    /// `then` with each frame's seq and location (the engine's batch that
    /// points to them), all under the tail's lock. If writing or syncing
    /// fails, the next commit writes over what was written; if `then`
    /// fails, the frames stay and `settle` decides whether anything points
    /// to them.
    pub fn commit<T>(
        &self,
        frames: &Frames,
        then: impl FnOnce(Vec<(u64, Location)>) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let mut tail = self.lock_tail();
        if frames.is_empty() {
            return then(Vec::new());
        }
        let base = *tail;
        self.file
            .write_all_at(&frames.bytes, base)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| io_error(&self.path, "cannot append to", e))?;
        *tail = base + frames.bytes.len() as u64;
        then(frames.at(base))
    }

    /// Overwrites frames' bytes with zeros and syncs: bytes retention took
    /// out of an entry leave the disk, not only the engine's index. Each
    /// stays a whole frame (of seq [`ERASED`]), so a walk over the file
    /// passes it and finds the frames after it.
    pub fn erase(&self, frames: &[Location]) -> Result<(), LogError> {
        if frames.is_empty() {
            return Ok(());
        }
        for at in frames {
            let zeros = vec![0u8; at.len as usize];
            let mut frame = Vec::with_capacity(HEADER as usize + zeros.len());
            write_frame(&mut frame, ERASED, at.len, false, &zeros);
            self.file
                .write_all_at(&frame, at.offset)
                .map_err(|e| io_error(&self.path, "cannot erase in", e))?;
        }
        self.file
            .sync_data()
            .map_err(|e| io_error(&self.path, "cannot sync", e))
    }

    /// The frame at `at` holds entry `seq`'s bytes of that length.
    pub fn holds(&self, seq: u64, at: Location) -> bool {
        let mut head = [0u8; HEADER as usize];
        self.file.read_exact_at(&mut head, at.offset).is_ok() && {
            let head = header(&head);
            head.len == at.len && head.seq == seq
        }
    }

    /// Makes the file hold only what the engine points to from `from` on:
    /// every frame there that `points_here` disowns is zeroed, and the
    /// file is cut after the last one it owns (a torn frame ends the walk:
    /// nothing after it was ever pointed to, since the engine is written
    /// only after the file is synced). Runs at open and after a failure,
    /// while no commit is under way.
    pub fn settle(
        &self,
        from: u64,
        mut points_here: impl FnMut(&FoundFrame) -> Result<bool, LogError>,
    ) -> Result<(), LogError> {
        let mut tail = self.lock_tail();
        let size = self.size()?;
        let from = from.max(MAGIC.len() as u64);
        let mut keep_to = from;
        let mut disowned: Vec<Location> = Vec::new();
        for found in self.frames_from(from, size) {
            let found = found?;
            if found.seq == ERASED {
                continue;
            }
            match points_here(&found)? {
                true => keep_to = found.at.end(),
                false => disowned.push(found.at),
            }
        }
        // Frames past the last owned one go with the cut.
        disowned.retain(|d| d.end() <= keep_to);
        self.erase(&disowned)?;
        if size > keep_to {
            self.file
                .set_len(keep_to)
                .and_then(|_| self.file.sync_all())
                .map_err(|e| io_error(&self.path, "cannot cut", e))?;
        }
        *tail = keep_to;
        Ok(())
    }

    /// The whole frames from `from` to the end of the file, ending at the
    /// first one cut short or failing its CRC.
    pub fn frames_after(
        &self,
        from: u64,
    ) -> Result<impl Iterator<Item = Result<FoundFrame, LogError>> + '_, LogError> {
        Ok(self.frames_from(from.max(MAGIC.len() as u64), self.size()?))
    }

    /// The file's length now.
    fn size(&self) -> Result<u64, LogError> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| io_error(&self.path, "cannot read", e))
    }

    /// The whole frames from `from` up to `size`, ending at the first one
    /// cut short or failing its CRC.
    fn frames_from(
        &self,
        from: u64,
        size: u64,
    ) -> impl Iterator<Item = Result<FoundFrame, LogError>> + '_ {
        let mut offset = from;
        std::iter::from_fn(move || {
            let mut head = [0u8; HEADER as usize];
            if offset + HEADER > size || self.file.read_exact_at(&mut head, offset).is_err() {
                return None;
            }
            let head = header(&head);
            let at = Location {
                offset,
                len: head.len,
            };
            if at.end() > size {
                return None;
            }
            let mut payload = vec![0u8; head.len as usize];
            if self
                .file
                .read_exact_at(&mut payload, offset + HEADER)
                .is_err()
                || crc(head.seq, &payload) != head.crc
            {
                return None;
            }
            offset = at.end();
            Some(Ok(FoundFrame { seq: head.seq, at }))
        })
    }
}

/// The claims of a frame [`Frames::push_claims`] wrote.
pub(super) fn parse_claims(payload: &[u8]) -> Result<Vec<(Vec<u8>, i64)>, LogError> {
    let mut claims = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let short = || {
            LogError::Malformed(format!(
                "a claims frame of {} bytes is cut short",
                payload.len()
            ))
        };
        let len = rest.get(..4).ok_or_else(short)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| short())?) as usize;
        let key = rest.get(4..4 + len).ok_or_else(short)?;
        let until = rest.get(4 + len..12 + len).ok_or_else(short)?;
        claims.push((
            key.to_vec(),
            i64::from_be_bytes(until.try_into().map_err(|_| short())?),
        ));
        rest = &rest[12 + len..];
    }
    Ok(claims)
}

/// A frame's header as read.
struct Header {
    /// The payload's length as stored.
    len: u32,
    compressed: bool,
    seq: u64,
    crc: u32,
}

fn header(bytes: &[u8]) -> Header {
    let u32_at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap_or([0; 4]));
    let len = u32_at(0);
    Header {
        len: len & !COMPRESSED,
        compressed: len & COMPRESSED != 0,
        seq: u64::from_be_bytes(bytes[4..12].try_into().unwrap_or([0; 8])),
        crc: u32_at(12),
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry_compression::entry_like;
    use super::*;

    fn frames(entries: &[(u64, &[u8])]) -> Frames {
        let mut frames = Frames::default();
        for (seq, bytes) in entries {
            frames.push(*seq, bytes).unwrap();
        }
        frames
    }

    #[test]
    fn a_committed_frame_reads_back_and_a_changed_byte_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = EntryFile::create(&path(dir.path())).unwrap();
        let placed = file
            .commit(&frames(&[(0, b"{\"a\":1}"), (1, b"{\"b\":2}")]), Ok)
            .unwrap();
        assert_eq!(placed[1].0, 1);
        assert_eq!(file.read(1, placed[1].1).unwrap(), b"{\"b\":2}");
        assert_eq!(Location::decode(&placed[0].1.encode()), Some(placed[0].1));

        let at = placed[0].1;
        let raw = File::options().write(true).open(path(dir.path())).unwrap();
        raw.write_all_at(b"X", at.offset + HEADER + 2).unwrap();
        let err = file.read(0, at).unwrap_err().to_string();
        assert!(err.contains("entry 0") && err.contains("checksum"), "{err}");
        assert!(err.contains(&format!("offset {}", at.offset)), "{err}");
        let err = file.read(5, placed[1].1).unwrap_err().to_string();
        assert!(err.contains("entry 1's"), "{err}");
    }

    #[test]
    fn settle_zeroes_disowned_frames_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let file = EntryFile::create(&path(dir.path())).unwrap();
        let placed = file
            .commit(&frames(&[(0, b"zero"), (1, b"one"), (2, b"two")]), Ok)
            .unwrap();
        // Half a frame, as a full disk leaves it.
        let end = placed[2].1.end();
        file.file.write_all_at(&[0, 0, 0, 9, 1], end).unwrap();
        // The engine points at 0 and 2, not 1.
        file.settle(0, |f| Ok(f.seq != 1)).unwrap();
        assert_eq!(file.file.metadata().unwrap().len(), end);
        assert_eq!(file.read(2, placed[2].1).unwrap(), b"two");
        assert!(!file.holds(1, placed[1].1));
        // Nothing owned after frame 0: the rest is cut.
        file.settle(0, |f| Ok(f.seq == 0)).unwrap();
        assert_eq!(file.file.metadata().unwrap().len(), placed[0].1.end());
        let next = file.commit(&frames(&[(3, b"three")]), Ok).unwrap();
        assert_eq!(next[0].1.offset, placed[0].1.end());
    }

    #[test]
    fn an_erased_frame_is_passed_over_and_the_frames_after_it_stay() {
        let dir = tempfile::tempdir().unwrap();
        let file = EntryFile::create(&path(dir.path())).unwrap();
        let placed = file
            .commit(&frames(&[(0, b"zero"), (1, b"secret"), (2, b"two")]), Ok)
            .unwrap();
        file.erase(&[placed[1].1]).unwrap();
        let bytes = std::fs::read(path(dir.path())).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"secret"));
        // The engine points at 0 and 2: nothing is cut.
        file.settle(0, |f| Ok(f.seq != 1)).unwrap();
        assert_eq!(file.read(2, placed[2].1).unwrap(), b"two");
        assert_eq!(file.frames_after(0).unwrap().count(), 3);
    }

    #[test]
    fn a_claims_frame_reads_back_and_is_no_entry() {
        let dir = tempfile::tempdir().unwrap();
        let file = EntryFile::create(&path(dir.path())).unwrap();
        let mut frames = frames(&[(0, b"{}")]);
        let claims = vec![(b"iss\0jti".to_vec(), 1_700_000_000), (Vec::new(), -1)];
        frames.push_claims(&claims).unwrap();
        let placed = file.commit(&frames, Ok).unwrap();
        assert_eq!(placed.len(), 1, "only the entry is placed");
        let found: Vec<FoundFrame> = file.frames_from(8, u64::MAX).map(|f| f.unwrap()).collect();
        assert_eq!(found[1].seq, CLAIMS);
        let payload = file.read(CLAIMS, found[1].at).unwrap();
        assert_eq!(parse_claims(&payload).unwrap(), claims);
        assert!(parse_claims(&payload[..payload.len() - 1]).is_err());
    }

    #[test]
    fn an_entry_is_stored_compressed_and_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let file = EntryFile::create(&path(dir.path())).unwrap();
        let big = entry_like("person-1");
        let placed = file
            .commit(&frames(&[(0, b"{\"short\":1}"), (1, &big)]), Ok)
            .unwrap();
        let stored = placed[1].1;
        assert!(
            u64::from(stored.len) * 3 < big.len() as u64,
            "{} bytes stored for {}",
            stored.len,
            big.len()
        );
        assert_eq!(file.read(1, stored).unwrap(), big);
        assert_eq!(file.read(0, placed[0].1).unwrap(), b"{\"short\":1}");
        let raw = std::fs::read(path(dir.path())).unwrap();
        assert!(!raw.windows(8).any(|w| w == b"person-1"), "compressed");

        // A changed byte fails the checksum, as in a plain frame.
        let at = stored.offset + HEADER + u64::from(stored.len) / 2;
        file.file
            .write_all_at(&[raw[at as usize] ^ 0xff], at)
            .unwrap();
        let err = file.read(1, stored).unwrap_err().to_string();
        assert!(err.contains("entry 1") && err.contains("checksum"), "{err}");

        // Erased, the frame is zeros and the walk still passes it.
        file.erase(&[stored]).unwrap();
        let raw = std::fs::read(path(dir.path())).unwrap();
        let payload = &raw[(stored.offset + HEADER) as usize..stored.end() as usize];
        assert!(payload.iter().all(|b| *b == 0));
        assert_eq!(file.frames_after(0).unwrap().count(), 2);
    }

    #[test]
    fn a_file_from_before_compression_reads_and_is_marked_when_opened_to_write() {
        let dir = tempfile::tempdir().unwrap();
        let at = path(dir.path());
        let big = entry_like("person-2");
        let mut bytes = MAGIC_UNCOMPRESSED.to_vec();
        write_frame(&mut bytes, 0, big.len() as u32, false, &big);
        std::fs::write(&at, &bytes).unwrap();
        let first = Location {
            offset: MAGIC.len() as u64,
            len: big.len() as u32,
        };

        let reader = EntryFile::open(&at, false).unwrap();
        assert_eq!(reader.read(0, first).unwrap(), big);
        assert_eq!(&std::fs::read(&at).unwrap()[..8], MAGIC_UNCOMPRESSED);
        drop(reader);

        let writer = EntryFile::open(&at, true).unwrap();
        assert_eq!(&std::fs::read(&at).unwrap()[..8], MAGIC);
        let placed = writer.commit(&frames(&[(1, &big)]), Ok).unwrap();
        assert!(placed[0].1.len < first.len);
        assert_eq!(writer.read(0, first).unwrap(), big);
        assert_eq!(writer.read(1, placed[0].1).unwrap(), big);
    }

    #[test]
    fn a_file_without_the_magic_is_refused_with_its_size() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), b"hello").unwrap();
        let err = EntryFile::open(&path(dir.path()), false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("not a trustpath entry file") && err.contains("5 bytes"),
            "{err}"
        );
    }
}
