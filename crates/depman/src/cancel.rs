//! Cancelling a request that waits: it ends `FAILURE` (`cancelled`) and is
//! never applied. A cancelled CREATE fails its deployment, and the worker
//! then ends the UPDATEs queued behind it as it does behind any failed
//! CREATE.

use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    domain::status::RequestType,
    store::{
        deployments::{self, Outcome},
        requests::{self, NotCancelled, RequestRow},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("request {0} not found")]
    NotFound(Uuid),
    #[error("request {0} already ended")]
    Finished(Uuid),
    #[error("request {0} is being carried out right now")]
    Applying(Uuid),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Cancels the user's request `id`, in the name of `user` (their
/// `X-User-ID`); returns it as it is then.
pub async fn cancel(
    pool: &PgPool,
    user_id: Uuid,
    user: &str,
    id: Uuid,
) -> Result<RequestRow, CancelError> {
    let mut tx = pool.begin().await?;
    let request = requests::find(&mut *tx, user_id, id)
        .await?
        .ok_or(CancelError::NotFound(id))?;
    requests::cancel(&mut *tx, id, &format!("cancelled by {user}"))
        .await?
        .map_err(|why| match why {
            NotCancelled::Finished => CancelError::Finished(id),
            NotCancelled::Applying => CancelError::Applying(id),
        })?;
    if request.request_type == RequestType::Create {
        deployments::record_outcome(&mut *tx, &request.identifier, Outcome::CreateFailed).await?;
    }
    tx.commit().await?;
    requests::find(pool, user_id, id)
        .await?
        .ok_or(CancelError::NotFound(id))
}
