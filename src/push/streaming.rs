//! A prefix's tarball as a resumable upload source: archived on a blocking thread, straight
//! into the upload body. Tarballs are reproducible, so an upload interrupted at byte N is
//! continued by archiving again and skipping the first N bytes.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{stream, FutureExt, StreamExt};
use tokio::sync::Semaphore;

use super::BuildinfoFn;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::registry::{Opened, UploadSource};
use crate::tarball::{self, TarballInfo, TarballOptions};

/// Bytes sent per chunk from the tarball thread to the upload.
const STREAM_CHUNK: usize = 1 << 20;

/// Sets its flag when dropped: tells a tarball thread that its future is gone.
#[derive(Default)]
pub(super) struct CancelOnDrop(pub(super) Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Writes into the upload body's channel, dropping the first `skip` bytes.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    skip: u64,
    /// The upload stopped reading (its request failed): not the archiver's fault.
    closed: bool,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(STREAM_CHUNK),
        ));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            self.closed = true;
            io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let skipped = self.skip.min(data.len() as u64) as usize;
        self.skip -= skipped as u64;
        self.buf.extend_from_slice(&data[skipped..]);
        if self.buf.len() >= STREAM_CHUNK {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

/// An install prefix archived as Spack archives it, as an [`UploadSource`].
pub(super) struct TarballStream {
    prefix: PathBuf,
    options: TarballOptions,
    buildinfo: BuildinfoFn,
    /// CPU slots: one is held while the tarball is written.
    jobs: Arc<Semaphore>,
    /// The result of the last complete run.
    info: Arc<Mutex<Option<TarballInfo>>>,
    /// A local failure (an unreadable file): final.
    failure: Arc<Mutex<Option<Error>>>,
}

impl TarballStream {
    pub(super) fn new(
        prefix: &Path,
        options: &TarballOptions,
        buildinfo: &BuildinfoFn,
        jobs: &Arc<Semaphore>,
    ) -> Self {
        Self {
            prefix: prefix.to_path_buf(),
            options: options.clone(),
            buildinfo: buildinfo.clone(),
            jobs: jobs.clone(),
            info: Arc::default(),
            failure: Arc::default(),
        }
    }

    /// The tarball's info, once a run completed.
    pub(super) fn info(&self) -> Option<TarballInfo> {
        self.info.lock().expect("info lock").clone()
    }

    /// Run the archiver on a blocking thread into `w`.
    fn spawn(
        &self,
        mut w: ChannelWriter,
        cancel: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<Result<TarballInfo>> {
        let (prefix, mut options, bi) = (
            self.prefix.clone(),
            self.options.clone(),
            self.buildinfo.clone(),
        );
        if options.cancel.is_none() {
            options.cancel = Some(cancel);
        }
        let failure = self.failure.clone();
        tokio::task::spawn_blocking(move || {
            let r = tarball::write_tarball(&prefix, &options, |l| bi(l), &mut w).and_then(|info| {
                w.flush().map(|()| info).map_err(|e| {
                    Error::new(ErrorKind::Transport, format!("streaming: {e}"))
                        .with_cause(crate::error::Cause::Interrupted)
                })
            });
            if let Err(e) = &r {
                if !w.closed {
                    *failure.lock().expect("failure lock") = Some(e.clone());
                }
                // Make the HTTP body fail so the registry never sees a complete blob.
                let _ = w.tx.blocking_send(Err(io::Error::other(e.to_string())));
            }
            r
        })
    }
}

impl UploadSource for TarballStream {
    fn size(&self) -> Option<u64> {
        None
    }

    fn digest(&self) -> Option<Digest> {
        None
    }

    fn open(&self, offset: u64) -> BoxFuture<'_, Result<Opened>> {
        async move {
            // The session is open already: the slot is for archiving, not for waiting on
            // the network, and is given back as soon as the tarball is written.
            let permit = self
                .jobs
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::cancelled())?;
            let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
            let w = ChannelWriter {
                tx,
                buf: Vec::with_capacity(STREAM_CHUNK),
                skip: offset,
                closed: false,
            };
            let cancel = CancelOnDrop::default();
            let builder = self.spawn(w, cancel.0.clone());
            let slot = self.info.clone();
            let finish = async move {
                let built = builder.await;
                drop((permit, cancel));
                let info = built
                    .map_err(|e| Error::new(ErrorKind::Io, format!("tarball task: {e}")))??;
                let digest = info.compressed_digest.clone();
                *slot.lock().expect("info lock") = Some(info);
                Ok(digest)
            };
            let body = stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            Ok(Opened {
                stream: body.boxed(),
                finish: finish.boxed(),
            })
        }
        .boxed()
    }

    fn failure(&self) -> Option<Error> {
        self.failure.lock().expect("failure lock").clone()
    }
}
