-- matrx-orm: no-transaction
CREATE INDEX CONCURRENTLY authors_name_idx ON authors (name);
