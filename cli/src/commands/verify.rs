//! `myc verify files`: compares two captures (or two interfaces of one) and
//! reports per spec/capture.md — exit 0 identical, 1 differs, 2 error. A
//! capture that turns corrupt part-way is compared up to the bad block, the
//! offset is reported, and the exit is 2.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use verify::join::{Captured, Ignore};
use verify::pcapng::{ReadError, Reader};
use verify::report::Report;

use super::Outcome;
use crate::args::{Format, VerifyCommand};

pub(crate) fn run(command: &VerifyCommand, format: Format) -> anyhow::Result<Outcome> {
    match command {
        VerifyCommand::Files { reference, candidate, reference_if, candidate_if, ignore, examples } => {
            let ignore = parse_ignore(ignore)?;
            let (reference_path, candidate_path) = match candidate {
                Some(candidate) => (reference.clone(), candidate.clone()),
                None => {
                    if reference_if.is_none() || candidate_if.is_none() {
                        bail!("one capture file holds both streams: name them with --reference-if and --candidate-if");
                    }
                    (reference.clone(), reference.clone())
                }
            };
            let reference_stream = CaptureStream::open(&reference_path, reference_if.clone())?;
            let candidate_stream = CaptureStream::open(&candidate_path, candidate_if.clone())?;
            let reference_state = Rc::clone(&reference_stream.state);
            let candidate_state = Rc::clone(&candidate_stream.state);
            let comparison = verify::join::compare(reference_stream, candidate_stream, ignore, *examples);
            let reference_name = reference_state.borrow().name(&reference_path);
            let candidate_name = candidate_state.borrow().name(&candidate_path);
            let report = Report::new(&comparison, &reference_name, &candidate_name, SystemTime::now());
            let mut out = io::stdout().lock();
            match format {
                Format::Json => report.render_json(&mut out)?,
                Format::Human => report.render_human(&mut out)?,
            }
            out.flush()?;
            for (path, state) in [(&reference_path, &reference_state), (&candidate_path, &candidate_state)] {
                if let Some(error) = &state.borrow().error {
                    bail!(
                        "{}: invalid pcapng at byte {} ({}); compared what came before it",
                        path.display(),
                        error.offset,
                        error.reason
                    );
                }
            }
            Ok(if report.identical() { Outcome::Success } else { Outcome::Negative })
        }
        VerifyCommand::Live { .. } => {
            bail!("`myc verify live` is not built yet in this version of the toolkit")
        }
    }
}

fn parse_ignore(fields: &[String]) -> anyhow::Result<Ignore> {
    let mut ignore = Ignore::default();
    for field in fields {
        match field.as_str() {
            "timestamp" => ignore.timestamp = true,
            "checksum" => ignore.checksum = true,
            "sequence" => ignore.sequence = true,
            other => bail!("--ignore takes timestamp, checksum or sequence, not {other:?}"),
        }
    }
    Ok(ignore)
}

/// What a capture stream learned while it was read.
#[derive(Default)]
struct StreamState {
    /// The interface the stream was taken from (the first one seen when no
    /// name was given).
    interface: Option<String>,
    error: Option<ReadError>,
}

impl StreamState {
    fn name(&self, path: &Path) -> String {
        self.interface.clone().unwrap_or_else(|| path.display().to_string())
    }
}

/// The packets of one interface of a capture, streamed.
struct CaptureStream {
    reader: Reader<BufReader<File>>,
    wanted: Option<String>,
    state: Rc<RefCell<StreamState>>,
}

impl CaptureStream {
    fn open(path: &PathBuf, wanted: Option<String>) -> anyhow::Result<CaptureStream> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(CaptureStream {
            reader: Reader::new(BufReader::with_capacity(1 << 20, file)),
            wanted,
            state: Rc::new(RefCell::new(StreamState::default())),
        })
    }
}

impl Iterator for CaptureStream {
    type Item = Captured;

    fn next(&mut self) -> Option<Captured> {
        loop {
            match self.reader.next_packet() {
                Ok(Some(packet)) => {
                    let name =
                        self.reader.interfaces().get(packet.interface as usize).map(|interface| interface.name.clone());
                    let mut state = self.state.borrow_mut();
                    match (&self.wanted, name) {
                        (Some(wanted), Some(name)) if *wanted != name => continue,
                        (_, name) => {
                            if state.interface.is_none() {
                                state.interface = name;
                            }
                        }
                    }
                    return Some(Captured { bytes: packet.data, arrival_ns: packet.timestamp_ns });
                }
                Ok(None) => return None,
                Err(error) => {
                    self.state.borrow_mut().error = Some(error);
                    return None;
                }
            }
        }
    }
}
