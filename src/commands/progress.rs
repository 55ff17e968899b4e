//! Progress bars (indicatif) for long passes, drawn on stderr only when it
//! is a terminal and `--quiet` was not given; informational lines
//! ("exported N entries") are left out with `--quiet` too.

use std::io::IsTerminal;
use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use trustpath::progress::Progress;

static QUIET: OnceLock<bool> = OnceLock::new();

/// Set once, from `--quiet`, before any command runs.
pub fn set_quiet(quiet: bool) {
    let _ = QUIET.set(quiet);
}

pub fn quiet() -> bool {
    QUIET.get().copied().unwrap_or(false)
}

/// An informational line on stderr, unless `--quiet`.
macro_rules! note {
    ($($arg:tt)*) => {
        if !$crate::commands::progress::quiet() {
            eprintln!($($arg)*);
        }
    };
}
pub(crate) use note;

/// A bar for one pass; hidden unless stderr is a terminal and not quiet.
pub struct Bar(ProgressBar);

impl Bar {
    pub fn new(what: &'static str) -> Self {
        let bar = ProgressBar::hidden();
        if !quiet() && std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} {wide_bar} {human_pos}/{human_len} entries (about {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(what);
        Self(bar)
    }
}

impl Progress for Bar {
    fn start(&self, total: Option<u64>) {
        if let Some(total) = total {
            self.0.set_length(total);
        }
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
