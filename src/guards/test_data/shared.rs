//! The compiled dictionaries, shared by every backend of the server: one file per
//! database, installation and dictionary generation under `$PGDATA/pg_prodguard/`,
//! mapped read-only.
//!
//! - The first backend that needs the matcher of a generation builds it and writes its
//!   image (written to a temporary file, flushed, then renamed into place, so that a
//!   reader sees a whole file or none); backends that need it meanwhile wait for it (a
//!   lock file per database) and map it. Every other backend maps the file: its pages are
//!   the kernel's page cache, shared, not the backend's private memory, and a new
//!   connection's first match costs one `open` and one `mmap`.
//! - A generation is a value of `prodguard.dictionary_generation`, which the dictionary
//!   tables' statement trigger sets from a sequence at every change. Only generations
//!   committed by other transactions are written (`cache.rs` checks): a sequence value is
//!   never handed out twice once committed, so a file's name always means one content.
//!   The name also carries the oid of `prodguard.dictionary` (the installation): the
//!   sequence starts again at 1 when the extension is dropped and created again.
//! - Files are never changed once renamed into place; writing a generation removes the
//!   database's older files (a backend that still maps one keeps its pages until it lets
//!   go), and the files of databases dropped since. Any failure here (no space, no
//!   permission, a damaged file) falls back to a matcher in the backend's own memory, as
//!   before: slower to start, never wrong.

use std::ffi::c_void;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use super::image::Words;
use super::matcher::Matcher;

/// Relative to the data directory, every backend's working directory (as `pg_stat_tmp`).
const DIR: &str = "pg_prodguard";

fn prefix(database: u32) -> String {
    format!("matcher.{database}.")
}

/// Which matcher a file holds: its database, installation (the oid of
/// `prodguard.dictionary`) and dictionary generation.
#[derive(Clone, Copy)]
pub struct Key {
    pub database: u32,
    pub installation: u32,
    pub generation: i64,
}

impl Key {
    fn name(&self) -> String {
        format!(
            "{}{}.{}",
            prefix(self.database),
            self.installation,
            self.generation
        )
    }

    fn path(&self) -> String {
        format!("{DIR}/{}", self.name())
    }
}

/// The matcher of a generation, mapped from its file, if the file is there and sound.
pub fn load(key: Key) -> Option<Matcher> {
    let file = File::open(key.path()).ok()?;
    let mapping = Mapping::of(&file)?;
    Matcher::open(Box::new(mapping)).ok()
}

/// Writes a generation's matcher for the other backends, and removes the database's older
/// files. Best effort: false when it could not be written.
pub fn store(key: Key, matcher: &Matcher) -> bool {
    let target = key.path();
    // SAFETY: reads the backend's process id, set at start.
    let pid = unsafe { pgrx::pg_sys::MyProcPid };
    let temporary = format!("{DIR}/tmp.{}.{pid}", key.name());
    let written = (|| -> std::io::Result<()> {
        fs::create_dir_all(DIR)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        f.write_all(matcher.image().bytes())?;
        f.sync_all()?;
        fs::rename(&temporary, &target)?;
        File::open(DIR)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
        return false;
    }
    let ours = key.name();
    if let Ok(entries) = fs::read_dir(DIR) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let older = name.starts_with(&prefix(key.database)) && name != ours;
            // (a temporary file an hour old was left by a backend that died writing it)
            let abandoned = name.starts_with("tmp.")
                && e.metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 3600);
            if older || abandoned || of_dropped_database(&name) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    true
}

/// Whether a file is a matcher of a database that no longer exists (DROP DATABASE leaves
/// its file; the next file written removes it).
fn of_dropped_database(name: &str) -> bool {
    let Some(oid) = name
        .strip_prefix("matcher.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|oid| oid.parse::<u32>().ok())
    else {
        return false;
    };
    // SAFETY: a syscache lookup by oid, in the transaction that writes the file.
    unsafe {
        !pgrx::pg_sys::SearchSysCacheExists(
            pgrx::pg_sys::SysCacheIdentifier::DATABASEOID as i32,
            pgrx::pg_sys::Datum::from(oid),
            pgrx::pg_sys::Datum::from(0),
            pgrx::pg_sys::Datum::from(0),
            pgrx::pg_sys::Datum::from(0),
        )
    }
}

/// One build at a time per database: the backends that need a new generation at once wait
/// for the first to write it, then map its file (instead of each building its own: seconds
/// of CPU and hundreds of MB each for a large dictionary). Released when dropped (or when
/// the process ends).
pub struct BuildLock(#[allow(dead_code)] File);

/// Waits for the build lock of `database`, answering query cancel and statement timeout
/// while it waits; None when there is no lock file to take (then each builds its own).
pub fn build_lock(database: u32) -> Option<BuildLock> {
    fs::create_dir_all(DIR).ok()?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(format!("{DIR}/build.{database}.lock"))
        .ok()?;
    loop {
        // SAFETY: flock on a descriptor this function owns.
        let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if taken {
            return Some(BuildLock(file));
        }
        let err = std::io::Error::last_os_error().raw_os_error();
        if err != Some(libc::EWOULDBLOCK) && err != Some(libc::EINTR) {
            return None;
        }
        super::check_interrupts();
        // SAFETY: pg_usleep only sleeps.
        unsafe { pgrx::pg_sys::pg_usleep(10_000) };
    }
}

/// A file mapped read-only, whole.
struct Mapping {
    address: *mut c_void,
    len: usize,
}

impl Mapping {
    fn of(file: &File) -> Option<Mapping> {
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len < 16 || len % 4 != 0 {
            return None;
        }
        // SAFETY: maps `len` bytes of an open file read-only and private to this mapping's
        // lifetime; the descriptor may be closed afterwards. MAP_FAILED is checked.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        (address != libc::MAP_FAILED).then_some(Mapping { address, len })
    }
}

impl Words for Mapping {
    fn words(&self) -> &[u32] {
        // SAFETY: the mapping is page-aligned (so u32-aligned), `len` bytes long and
        // readable until dropped; files are never written once renamed into place.
        unsafe { std::slice::from_raw_parts(self.address.cast::<u32>(), self.len / 4) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `of` mapped, once.
        unsafe { libc::munmap(self.address, self.len) };
    }
}
