//! Export progress on stderr: a bar redrawn in place on a terminal, a plain line every
//! few seconds otherwise (logs, CI, `nohup`).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a line is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);
/// How often the bar is redrawn on a terminal.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
const BAR_WIDTH: usize = 30;

pub struct Progress {
    terminal: bool,
    started: Instant,
    /// Records already written when this run started (a resumed export).
    before: u64,
    total: Option<u64>,
    last: Option<Instant>,
}

impl Progress {
    pub fn new(before: u64, total: Option<u64>) -> Self {
        let terminal = std::io::stderr().is_terminal();
        Self { terminal, started: Instant::now(), before, total, last: None }
    }

    /// `written` records in all so far.
    pub fn update(&mut self, written: u64) {
        let every = if self.terminal { REDRAW_EVERY } else { LINE_EVERY };
        if self.last.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        self.print(written);
    }

    /// The last figures, and the end of the bar's line.
    pub fn finish(&mut self, written: u64) {
        self.print(written);
        if self.terminal {
            eprintln!();
        }
    }

    fn print(&self, written: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = written.saturating_sub(self.before) as f64 / secs;
        // The total was counted at the start; messages may have arrived since.
        let total = self.total.map(|t| t.max(written));
        let eta = match total {
            Some(total) if rate > 0.0 => {
                let left = (total - written) as f64 / rate;
                format!(", ETA {}", clock(left as u64))
            }
            _ => String::new(),
        };
        let count = match total {
            Some(total) => format!("{written}/{total} messages"),
            None => format!("{written} messages"),
        };
        if self.terminal {
            let done = total.map_or(0, |t| if t == 0 { BAR_WIDTH } else { bar(written, t) });
            let bar = format!("{}{}", "#".repeat(done), "-".repeat(BAR_WIDTH - done));
            eprint!("\r[{bar}] {count}, {rate:.0}/s{eta}   ");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("export: {count}, {rate:.0}/s{eta}");
        }
    }
}

fn bar(written: u64, total: u64) -> usize {
    ((written.min(total) as f64 / total as f64) * BAR_WIDTH as f64) as usize
}

/// `H:MM:SS` or `M:SS`.
fn clock(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}
