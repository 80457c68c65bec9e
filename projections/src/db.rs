//! The SQL layer read models are written in: `amtsbuch_infra::db`, under the names the
//! projections have always used for it (`ReadDb` for `Db`, `ReadTx` for `Tx`). It lives in
//! `infra` because the ledger, the relay and the key vault use it for their own tables too.

pub use amtsbuch_infra::db::{
    chunk_sizes, placeholders, values_list, Column, Db as ReadDb, DbError, Dialect, Kind, Row,
    ToValue, Tx as ReadTx, Value,
};
