-- matrx-orm: no-transaction
DROP INDEX CONCURRENTLY entries_amount_idx;
DROP INDEX CONCURRENTLY entries_account_idx;
