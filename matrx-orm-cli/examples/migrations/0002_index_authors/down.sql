-- matrx-orm: no-transaction
DROP INDEX CONCURRENTLY authors_name_idx;
