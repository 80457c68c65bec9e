//! Progress of long commands on standard error: a redrawn line on a terminal, a line every
//! few seconds when standard error is a file or a pipe (CI logs, systemd), so an operator
//! always sees that a rebuild or a re-wrap is moving and how fast.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a terminal line is redrawn, and how often a log line is written.
const REDRAW: Duration = Duration::from_millis(200);
const LOG_EVERY: Duration = Duration::from_secs(5);

/// One progress display.
#[derive(Debug)]
pub struct ProgressLine {
    what: String,
    tty: bool,
    last: Option<Instant>,
}

impl ProgressLine {
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    /// Show `done` of `total`, with a rate, unless shown very recently.
    pub fn show(&mut self, done: u64, total: u64, per_sec: f64) {
        let every = if self.tty { REDRAW } else { LOG_EVERY };
        if self.last.is_some_and(|l| l.elapsed() < every) && done < total {
            return;
        }
        self.last = Some(Instant::now());
        let line = render(&self.what, done, total, per_sec);
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// End the display, leaving the terminal on a fresh line.
    pub fn finish(self) {
        if self.tty && self.last.is_some() {
            eprintln!();
        }
    }
}

fn render(what: &str, done: u64, total: u64, per_sec: f64) -> String {
    const WIDTH: u64 = 30;
    let filled = (done.min(total) * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH);
    let percent = (done.min(total) * 100).checked_div(total).unwrap_or(100);
    format!(
        "{what} [{}{}] {done}/{total} ({percent}%, {per_sec:.0} events/s)",
        "#".repeat(filled as usize),
        "-".repeat((WIDTH - filled) as usize),
    )
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn the_bar_fills_with_the_work_done() {
        assert_eq!(
            render("rebuilding streams", 50, 200, 1234.4),
            "rebuilding streams [#######-----------------------] 50/200 (25%, 1234 events/s)"
        );
        assert_eq!(
            render("x", 0, 0, 0.0),
            "x [##############################] 0/0 (100%, 0 events/s)"
        );
    }
}
