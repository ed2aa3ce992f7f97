-- matrx-orm: no-transaction
-- An index built without blocking writes cannot be built in a transaction.
CREATE INDEX CONCURRENTLY entries_account_idx ON entries (account_id);
CREATE INDEX CONCURRENTLY entries_amount_idx ON entries (amount);
