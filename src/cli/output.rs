//! What commands print on stdout goes through here: anstream decides colour once
//! (NO_COLOR, CLICOLOR_FORCE, CLICOLOR=0, a terminal or not) and strips it where it must
//! not show, and a reader that went away (`latchkey plan | head`) ends the command
//! quietly instead of a panic.

use std::io::{IsTerminal, Write};

use anstream::ColorChoice;

use super::CliError;

/// True when stdout may show colour.
pub fn stdout_color() -> bool {
    shows_color(anstream::AutoStream::choice(&std::io::stdout()))
}

/// True when stderr (logs, progress) may show colour.
pub fn stderr_color() -> bool {
    shows_color(anstream::AutoStream::choice(&std::io::stderr()))
}

fn shows_color(choice: ColorChoice) -> bool {
    !matches!(choice, ColorChoice::Never)
}

/// True when stderr is a terminal (progress bars).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Writes `text` to stdout and flushes it; a closed pipe is [`CliError::ClosedPipe`].
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = anstream::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::ClosedPipe,
            _ => CliError::Io(e),
        })
}

/// [`print`] with a newline.
pub fn println(text: &str) -> Result<(), CliError> {
    print(&format!("{text}\n"))
}
