//! File work off the network loop: the core hands out [`FileJob`]s
//! (importing a shared file into the blob store), the `kith-files`
//! thread runs them one at a time, in the order given, and hands each
//! result back to the loop as a command, which wakes it. Reading and
//! encrypting a large file never delays a datagram, an acknowledgement
//! or another request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use super::DaemonError;
use super::core::{FileJob, FileJobDone};
use crate::store::BlobWorker;

/// The `kith-files` thread and its queue. Dropping it cancels the job at
/// hand (its share fails with a sentence, nothing of it stays) and waits
/// for the thread to end.
pub(crate) struct FileWorker {
    jobs: Option<Sender<FileJob>>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileWorker {
    /// Starts the thread; `done` takes each result back to the loop.
    pub(crate) fn start(
        worker: BlobWorker,
        done: impl Fn(FileJobDone) + Send + 'static,
    ) -> Result<Self, DaemonError> {
        let (jobs, rx) = mpsc::channel::<FileJob>();
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&cancel);
        let thread = std::thread::Builder::new()
            .name("kith-files".into())
            .spawn(move || {
                for job in rx {
                    done(job.run(&worker, &stop));
                }
            })
            .map_err(|e| DaemonError::File(format!("cannot start the file thread: {e}")))?;
        Ok(FileWorker {
            jobs: Some(jobs),
            cancel,
            thread: Some(thread),
        })
    }

    /// Queues `job`; gives it back if the thread is gone.
    pub(crate) fn submit(&self, job: FileJob) -> Result<(), FileJob> {
        match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|mpsc::SendError(job)| job),
            None => Err(job),
        }
    }
}

impl Drop for FileWorker {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        // Closing the queue ends the thread once the job at hand stops;
        // the jobs behind it fail at their first check.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
