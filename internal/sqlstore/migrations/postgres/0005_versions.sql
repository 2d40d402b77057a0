-- Versions start at 1: a stored 0 (rows from before 0002, which added the column with DEFAULT 0) would read as "any
-- version" to a conditional delete. New rows are always written with a version of 1 or more. PostgreSQL dialect.
UPDATE apis SET version = 1 WHERE version = 0;
UPDATE clients SET version = 1 WHERE version = 0;
UPDATE grants SET version = 1 WHERE version = 0;
