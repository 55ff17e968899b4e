//! Progress of a long pass over the log (verify, export, replay, copy),
//! for a command to show. The library only reports; the binary decides
//! whether anything is drawn.

/// Told how far a pass has come. Called from the pass's own threads.
pub trait Progress: Sync {
    /// The pass starts; `total` items when known.
    fn start(&self, _total: Option<u64>) {}
    /// `n` more items done.
    fn advance(&self, _n: u64) {}
}

/// Reports nowhere.
pub struct Silent;

impl Progress for Silent {}
