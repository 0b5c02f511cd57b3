//! A few database connections shared by the requests, each switched to the
//! reader role and to read-only transactions when it is opened.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::Client;

use crate::Connect;
use crate::error::{ApiError, ServeError};

pub(crate) struct Pool {
    connect: Connect,
    idle: Arc<Mutex<Vec<Client>>>,
    permits: Arc<Semaphore>,
}

/// A connection lent to one request; back to the pool when dropped.
pub(crate) struct Lent {
    client: Option<Client>,
    idle: Arc<Mutex<Vec<Client>>>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Lent {
    type Target = Client;

    fn deref(&self) -> &Client {
        // Set at creation and taken only in drop.
        self.client.as_ref().expect("a lent connection")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !client.is_closed()
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push(client);
        }
    }
}

impl Pool {
    pub(crate) fn new(connect: Connect, size: usize) -> Pool {
        Pool {
            connect,
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(Semaphore::new(size)),
        }
    }

    /// Opens one connection now, so that a wrong setup stops the start.
    pub(crate) async fn check(&self) -> Result<(), ServeError> {
        let client = self.open().await.map_err(|e| {
            ServeError::Database(match e.help {
                Some(help) => format!("{}\n  help: {help}", e.message),
                None => e.message,
            })
        })?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(client);
        }
        Ok(())
    }

    pub(crate) async fn get(&self) -> Result<Lent, ApiError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping"))?;
        let reused = self.idle.lock().ok().and_then(|mut idle| {
            while let Some(client) = idle.pop() {
                if !client.is_closed() {
                    return Some(client);
                }
            }
            None
        });
        let client = match reused {
            Some(client) => client,
            None => self.open().await?,
        };
        Ok(Lent {
            client: Some(client),
            idle: self.idle.clone(),
            _permit: permit,
        })
    }

    /// A new connection of the server's own database user, not switched to
    /// the reader role and not kept: for applying a revert (an operator's),
    /// the only thing the server writes.
    pub(crate) async fn open_writer(&self) -> Result<Client, ApiError> {
        let client = (self.connect)().await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot connect to the database: {e}"),
            )
        })?;
        client.batch_execute("SET statement_timeout = 0").await?;
        Ok(client)
    }

    async fn open(&self) -> Result<Client, ApiError> {
        let client = (self.connect)().await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot connect to the database: {e}"),
            )
        })?;
        let installed: bool = client
            .query_one(
                "SELECT to_regprocedure('pgtrail.role_name(text)') IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        if !installed {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "pgtrail is not installed in this database",
            )
            .with_help("`pgtrail apply` installs it and starts recording changes"));
        }
        let reader: String = client
            .query_one("SELECT pgtrail.role_name('reader')::text", &[])
            .await?
            .get(0);
        let switched = client
            .query_one(
                "SELECT set_config('role', $1::text, false), \
                        set_config('default_transaction_read_only', 'on', false), \
                        set_config('statement_timeout', '30s', false)",
                &[&reader],
            )
            .await;
        if let Err(error) = switched {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the server reads the trail as {reader}, but its database user may not act as that role: {}",
                    error.as_db_error().map_or(error.to_string(), |db| db.message().to_string())
                ),
            )
            .with_help(format!(
                "GRANT {reader} TO the user of the server's database URL (or connect as a member of it)"
            )));
        }
        Ok(client)
    }
}
