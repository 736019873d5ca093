//! One stream of a capture file: the packets of one interface, as
//! [`Captured`] messages, read on demand (streaming, one block in memory),
//! with what was learned on the way — the interface's name, how far the
//! file has been read, and where it stopped being readable — kept in a
//! shared [`StreamInfo`] that outlives the iterator. (Reading ahead on a
//! second thread was measured slower: the allocator pays for messages freed
//! on another thread than the one that made them.)

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::join::Captured;
use crate::pcapng::{ReadError, Reader};

/// What the reader learned, readable while and after it runs.
#[derive(Debug, Default)]
pub struct StreamInfo {
    /// Bytes of the file consumed so far (for progress).
    pub bytes_read: AtomicU64,
    /// The file's size when opened.
    pub total_bytes: u64,
    interface: Mutex<Option<String>>,
    /// Every interface the file declared, once it has been read to its end.
    interfaces: Mutex<Vec<String>>,
    error: Mutex<Option<ReadError>>,
}

impl StreamInfo {
    /// The name of the interface the stream came from: the wanted one, or
    /// the first one seen when none was named.
    pub fn interface(&self) -> Option<String> {
        self.interface.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The names of every interface of the file (known once the stream has
    /// been read to its end).
    pub fn interfaces(&self) -> Vec<String> {
        self.interfaces.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Where and why the file stopped being readable, if it did.
    pub fn error(&self) -> Option<ReadError> {
        self.error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The packets of one interface of a capture file, in file order.
#[derive(Debug)]
pub struct CaptureStream {
    reader: Reader<BufReader<File>>,
    wanted: Option<String>,
    /// The interface index of the stream, once its first packet is seen.
    chosen: Option<u32>,
    info: Arc<StreamInfo>,
    /// Packets since `bytes_read` was last published.
    unpublished: u32,
}

impl CaptureStream {
    /// Opens `path`. With `interface`, only that interface's packets are
    /// yielded; without, the first interface that carries a packet is the
    /// stream and the others are skipped.
    ///
    /// # Errors
    /// [`crate::Error::Io`] when the file cannot be opened.
    pub fn open(path: &Path, interface: Option<&str>) -> Result<CaptureStream, crate::Error> {
        let io_error = |source| crate::Error::Io { path: path.display().to_string(), source };
        let file = File::open(path).map_err(io_error)?;
        let total_bytes = file.metadata().map_err(io_error)?.len();
        Ok(CaptureStream {
            reader: Reader::new(BufReader::with_capacity(1 << 20, file)),
            wanted: interface.map(str::to_owned),
            chosen: None,
            info: Arc::new(StreamInfo { total_bytes, ..StreamInfo::default() }),
            unpublished: 0,
        })
    }

    /// What the reader learned; keep it to read the interface name and any
    /// error after the stream is consumed.
    pub fn info(&self) -> Arc<StreamInfo> {
        Arc::clone(&self.info)
    }

    fn belongs(&mut self, interface: u32) -> bool {
        if let Some(index) = self.chosen {
            return interface == index;
        }
        let found = self.reader.interfaces().get(interface as usize).map(|found| found.name.clone());
        if let Some(wanted) = &self.wanted
            && found.as_ref() != Some(wanted)
        {
            return false;
        }
        self.chosen = Some(interface);
        *self.info.interface.lock().unwrap_or_else(PoisonError::into_inner) = found;
        true
    }
}

impl Iterator for CaptureStream {
    type Item = Captured;

    fn next(&mut self) -> Option<Captured> {
        loop {
            self.unpublished += 1;
            if self.unpublished == 4096 {
                self.unpublished = 0;
                self.info.bytes_read.store(self.reader.offset(), Ordering::Relaxed);
            }
            match self.reader.next_packet() {
                Ok(Some(packet)) => {
                    if self.belongs(packet.interface) {
                        return Some(Captured { bytes: packet.data, arrival_ns: packet.timestamp_ns });
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    *self.info.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
                    break;
                }
            }
        }
        self.info.bytes_read.store(self.reader.offset(), Ordering::Relaxed);
        *self.info.interfaces.lock().unwrap_or_else(PoisonError::into_inner) =
            self.reader.interfaces().iter().map(|interface| interface.name.clone()).collect();
        None
    }
}

/// SHA-256 of a file's bytes, hex: ties a report to the capture it read.
///
/// # Errors
/// [`crate::Error::Io`] when the file cannot be read.
pub fn file_sha256(path: &Path) -> Result<String, crate::Error> {
    use sha2::Digest;

    let io_error = |source| crate::Error::Io { path: path.display().to_string(), source };
    let mut file = File::open(path).map_err(io_error)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io_error)?;
    Ok(hex::encode(hasher.finalize()))
}
