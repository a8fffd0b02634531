-- PostgreSQL's 0022 builds the link table's key again with 0021's copies included. SQLite's link
-- table is WITHOUT ROWID: its key's B-tree already holds every column.
SELECT 1;
