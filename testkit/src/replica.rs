//! A primary and a streaming standby of a test's own: two throwaway clusters, the
//! standby made with `pg_basebackup -R` and replaying the primary's WAL as it streams.
//! For tests of read-replica routing: reads that must (or must not) see a write, a
//! standby whose replay is paused (`pg_wal_replay_pause()`) to make it lag, and a
//! standby killed while loads run.
//!
//! Starting runs `initdb`, `pg_basebackup` and `pg_ctl` twice: a few seconds, blocking
//! the calling thread.
//!
//! ```no_run
//! # async fn demo() -> Result<(), matrx_orm_testkit::TestkitError> {
//! let pair = matrx_orm_testkit::StreamingPair::start()?;
//! let primary = matrx_orm_testkit::connect(&pair.primary_url()).await?;
//! primary.batch_execute("CREATE TABLE t (id int)").await.ok();
//! pair.wait_replayed().await?; // the standby has the table now
//! # Ok(()) }
//! ```

use std::time::{Duration, Instant};

use crate::cluster::{start_owned, start_standby, Extras, OwnedCluster};
use crate::db::connect;
use crate::TestkitError;

/// How long [`StreamingPair::wait_replayed`] waits for the standby.
const REPLAY_WAIT: Duration = Duration::from_secs(20);

/// A running primary and its streaming standby; both stopped and removed when dropped.
#[derive(Debug)]
pub struct StreamingPair {
    primary: OwnedCluster,
    standby: Option<OwnedCluster>,
}

impl StreamingPair {
    /// Starts a primary, takes a base backup of it, and starts the standby.
    pub fn start() -> Result<StreamingPair, TestkitError> {
        let primary = start_owned(Extras {
            settings: vec![
                // Report replay progress promptly, so lag is seen as it happens.
                "wal_receiver_status_interval = 1s".to_owned(),
            ],
            ..Extras::default()
        })?;
        let standby = start_standby(primary.port)?;
        Ok(StreamingPair {
            primary,
            standby: Some(standby),
        })
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres` of the primary.
    pub fn primary_url(&self) -> String {
        url(self.primary.port)
    }

    /// The standby's URL, while it runs.
    pub fn standby_url(&self) -> Option<String> {
        self.standby.as_ref().map(|s| url(s.port))
    }

    /// Stops the standby at once (`pg_ctl stop -m immediate`, as a crash would) and
    /// removes it. Blocks until it is gone.
    pub fn kill_standby(&mut self) {
        drop(self.standby.take());
    }

    /// Waits until the standby has replayed everything the primary had written when
    /// this was called (at most 20 s). "Written" is the WAL insert position: the
    /// testkit's clusters commit asynchronously, so a commit may not have reached the
    /// WAL write position yet.
    pub async fn wait_replayed(&self) -> Result<(), TestkitError> {
        let standby_url = self.standby_url().ok_or_else(|| {
            TestkitError::unavailable("a PostgreSQL standby", "the standby was stopped")
        })?;
        let primary = connect(&self.primary_url()).await?;
        let sql = "SELECT pg_current_wal_insert_lsn()::text";
        let lsn: String = primary
            .query_one(sql, &[])
            .await
            .map_err(|e| TestkitError::query(sql, e))?
            .get(0);
        let standby = connect(&standby_url).await?;
        let sql = "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn";
        let started = Instant::now();
        loop {
            let replayed: Option<bool> = standby
                .query_one(sql, &[&lsn])
                .await
                .map_err(|e| TestkitError::query(sql, e))?
                .get(0);
            if replayed == Some(true) {
                return Ok(());
            }
            if started.elapsed() > REPLAY_WAIT {
                return Err(TestkitError::unavailable(
                    "a PostgreSQL standby",
                    format!("it did not replay up to {lsn} within {REPLAY_WAIT:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}
