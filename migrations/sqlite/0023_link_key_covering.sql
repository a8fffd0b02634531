-- PostgreSQL's 0023 makes 0022's index the link table's primary key; SQLite's needs nothing (0022).
SELECT 1;
